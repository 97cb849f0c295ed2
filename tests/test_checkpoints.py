"""Checkpoint retention: the newest ``keep_checkpoints`` steps survive, through Orbax's
preservation-policy API (``max_to_keep`` is deprecated in the installed orbax-checkpoint)."""
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from ssljax.train.checkpoint import Checkpoints
from ssljax.train.state import TrainState


def _state(step):
  return TrainState(step=jnp.array(step, jnp.int32), params={"w": jnp.full((4,), float(step))},
                    batch_stats={},
                    followers={}, objective_state={}, opt_states={}, rng=jax.random.PRNGKey(0),
                    nonfinite={"count": jnp.zeros((), jnp.int32)})


def test_the_latest_keep_checkpoints_are_kept(tmp_path):
  checkpoints = Checkpoints(tmp_path, keep=2)
  options = checkpoints.manager._options  # noqa: SLF001 (what the manager was really given)
  assert options.max_to_keep is None
  assert options.preservation_policy == ocp.checkpoint_managers.LatestN(n=2)
  for step in (10, 20, 30, 40):
    checkpoints.save(_state(step))
    checkpoints.manager.wait_until_finished()
  checkpoints.close()
  assert sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == [30, 40]
  reopened = Checkpoints(tmp_path, keep=2)
  state, step = reopened.restore_latest(_state(0))
  reopened.close()
  assert step == 40 and float(state.params["w"][0]) == 40.0
