"""Mixed precision (``config.dtype = "bfloat16"``): the encoder computes in bf16 while parameters,
optimizer state, BatchNorm statistics, heads' outputs and losses stay float32, and on CPU a bf16
step gives the float32 loss within bf16's tolerance.

The dtype checks run for every objective under ``jax.eval_shape`` (tracing only, nothing compiled);
the numerical comparison trains the quickstart InfoNCE for two steps.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run_steps
from ssljax.objectives import OBJECTIVES, LossInputs
from ssljax.train import loop
from test_device_equivalence import synthetic_dataset, tiny_config


@pytest.fixture(scope="module")
def dataset():
  return synthetic_dataset()


def _bf16(objective, devices=1):
  config = tiny_config(objective, devices)
  config.dtype = "bfloat16"
  return config


@pytest.mark.parametrize("objective", OBJECTIVES.names())
def test_bf16_computes_in_bf16_and_keeps_parameters_losses_and_gradients_float32(objective, dataset):
  exp = loop.build_experiment(_bf16(objective), dataset)
  state = jax.eval_shape(lambda: loop.initial_state(exp))
  for what, tree in (("params", state.params), ("batch_stats", state.batch_stats),
                     ("opt_states", state.opt_states)):
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      if jnp.issubdtype(leaf.dtype, jnp.floating):
        assert leaf.dtype == jnp.float32, f"{what}{jax.tree_util.keystr(path)} is {leaf.dtype}"
  images = jax.ShapeDtypeStruct((4, *dataset.image_shape), jnp.float32)
  (pooled, stages), _ = jax.eval_shape(
      lambda p, s, x: exp.objective.apply("encoder", p, s, x, train=True), state.params,
      state.batch_stats, images)
  assert pooled.dtype == jnp.float32  # what heads and probes read
  assert all(a.dtype == jnp.bfloat16 for a in stages.values()), "the encoder computes in bf16"
  batch = {"images": jax.ShapeDtypeStruct((4, *dataset.image_shape), jnp.uint8),
           "labels": jax.ShapeDtypeStruct((4,), jnp.int32)}
  for player in exp.objective.players():
    owned = {n: state.params[n] for n in player.owns}
    # The followers and the objective's state (shapes here) are arguments, not constants.
    loss_fn = lambda o, params, stats, batch, followers, own, player=player: player.loss(
        {**params, **o}, LossInputs(batch, jax.random.PRNGKey(0), jnp.zeros((), jnp.int32), stats,
                                    followers, own))
    (loss, out), grads = jax.eval_shape(
        jax.value_and_grad(loss_fn, has_aux=True), owned, state.params, state.batch_stats, batch,
        state.followers, state.objective_state)
    stats, metrics = out.batch_stats, out.metrics
    assert loss.dtype == jnp.float32, player.name
    assert all(m.dtype in (jnp.float32, jnp.int32) for m in metrics.values()), metrics
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads)), player.name
    assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(stats)), player.name


def test_bf16_infonce_steps_match_float32_within_tolerance(dataset):
  config = tiny_config("infonce", 2)
  initial = jax.device_get(loop.initial_state(loop.build_experiment(config, dataset)))
  f32_history, _ = run_steps(config, dataset, 2, initial=initial)
  bf16_history, bf16_state = run_steps(_bf16("infonce", 2), dataset, 2, initial=initial)
  for f32, bf16 in zip(f32_history, bf16_history):
    np.testing.assert_allclose(bf16["main/loss"], f32["main/loss"], rtol=5e-2)
    np.testing.assert_allclose(bf16["main/grad_norm"], f32["main/grad_norm"], rtol=1e-1)
  assert {leaf.dtype for leaf in jax.tree.leaves(bf16_state.params)} == {np.dtype("float32")}
  assert f32_history[-1]["main/loss"] != bf16_history[-1]["main/loss"]  # bf16 really was used
