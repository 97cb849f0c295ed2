"""Checkpoint retention: the newest ``keep_checkpoints`` steps survive, through Orbax's
preservation-policy API (``max_to_keep`` is deprecated in the installed orbax-checkpoint). A
template the checkpoint does not fit is refused from the metadata, naming the array, before any
read starts."""
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from ssljax.train.checkpoint import Checkpoints
from ssljax.train.state import TrainState


def _state(step, params=None):
  params = {"w": jnp.full((4,), float(step))} if params is None else params
  return TrainState(step=jnp.array(step, jnp.int32), params=params,
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


@pytest.mark.parametrize("params, error", [
    ({"w": jnp.zeros((5,))}, r"params/w is stored with shape \(4,\); this config builds \(5,\)"),
    ({"w": jnp.zeros((4,)), "b": jnp.zeros(())}, r"params/b is not in the checkpoint"),
])
def test_a_template_the_checkpoint_does_not_fit_is_refused_by_name(tmp_path, params, error):
  checkpoints = Checkpoints(tmp_path)
  checkpoints.save(_state(10))
  checkpoints.manager.wait_until_finished()
  with pytest.raises(ValueError, match=error):
    checkpoints.restore(_state(0, params), 10)
  checkpoints.close()
