"""Micro-batching with global negatives (``config.micro_batch_size``, ssljax/objectives/microbatch.py):
the micro-batched InfoNCE step gives the full-batch loss, gradients and parameters; it needs less
activation memory; bad settings are one-line errors.

The exactness test uses an encoder and projector without BatchNorm (an MLP, ``projector_dims`` of
one layer): with BatchNorm each micro-batch is normalised with its own statistics, which changes
the function (documented in the module), so no equality is expected there.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run_steps
from ssljax.errors import UserError
from ssljax.objectives import losses
from ssljax.objectives import microbatch
from ssljax.train import loop
from test_device_equivalence import synthetic_dataset, tiny_config


def test_split_interleaves_rows_and_merge_restores_them():
  x = np.arange(12 * 2).reshape(12, 2)
  parts = microbatch.split(x, 3)
  assert parts.shape == (3, 4, 2)
  np.testing.assert_array_equal(parts[1][:, 0], x[1::3, 0])  # micro-batch m: rows m, m+3, ...
  np.testing.assert_array_equal(microbatch.merge(parts), x)
  assert microbatch.num_micro_batches(12, 0) == 1 and microbatch.num_micro_batches(12, 12) == 1
  assert microbatch.num_micro_batches(12, 4) == 3
  with pytest.raises(UserError, match="must divide batch_size"):
    microbatch.num_micro_batches(12, 5)


def _toy_loss(params, x, num):
  """InfoNCE over the batch of the embeddings of two 'views' ``x[0], x[1]`` by a wide network whose
  activations (rows x 2048, five of them per view) dwarf its parameters and the loss's (2N)^2
  logits; the per-micro-batch input mean plays the part of BatchNorm's statistics."""
  def embed(two, stats, key):
    def net(v):
      h = v @ params[0]
      for _ in range(4):
        h = jnp.sin(h) * h
      return h @ params[1]
    return (net(two[0]), net(two[1])), {"mean": jnp.mean(two[0], axis=0)}
  (z1, z2), stats = microbatch.map_micro_batches(
      embed, (x[0], x[1]), {"mean": jnp.zeros(x.shape[-1])}, jax.random.PRNGKey(0), num)
  return losses.info_nce(z1, z2, 0.5), stats


@pytest.fixture(scope="module")
def toy():
  k0, k1, k2 = jax.random.split(jax.random.PRNGKey(1), 3)
  params = [jax.random.normal(k0, (32, 2048)) / 6, jax.random.normal(k1, (2048, 16)) / 45]
  return params, jax.random.normal(k2, (2, 256, 32))


def test_toy_gradient_matches_and_activation_memory_shrinks(toy):
  params, x = toy
  results, temp = {}, {}
  for num in (1, 8):
    fn = jax.jit(jax.value_and_grad(_toy_loss, has_aux=True), static_argnums=2)
    compiled = fn.lower(params, x, num).compile()
    temp[num] = compiled.memory_analysis().temp_size_in_bytes
    results[num] = compiled(params, x)
  (loss1, stats1), grads1 = results[1]
  (loss8, stats8), grads8 = results[8]
  np.testing.assert_allclose(loss8, loss1, rtol=1e-6)
  for g8, g1 in zip(grads8, grads1):
    np.testing.assert_allclose(g8, g1, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(stats8["mean"], stats1["mean"], rtol=1e-5, atol=1e-6)
  # Activations dominate; 8 micro-batches keep about one eighth of them.
  assert temp[8] < 0.4 * temp[1], temp


def _no_batchnorm_config(micro_batch_size, devices=2):
  config = tiny_config("infonce", devices)
  config.encoder = "mlp"
  config.encoders.mlp.update(hidden=(64,), features=32)
  config.objectives.infonce.projector_dims = (16,)  # no hidden layer, so no BatchNorm
  config.micro_batch_size = micro_batch_size
  return config


def test_micro_batched_infonce_steps_match_the_full_batch():
  dataset = synthetic_dataset()
  full = _no_batchnorm_config(0)
  initial = jax.device_get(loop.initial_state(loop.build_experiment(full, dataset)))
  ref_history, ref_state = run_steps(full, dataset, 2, initial=initial)
  # 16 images in 4 micro-batches of 4 on 4 devices (one row of each per device); every anchor
  # still has 30 negatives.
  history, state = run_steps(_no_batchnorm_config(4, devices=4), dataset, 2, initial=initial)
  for ref, got in zip(ref_history, history):
    for name in ("main/loss", "main/total_loss", "main/grad_norm", "online_probe/loss",
                 "online_probe/acc"):
      np.testing.assert_allclose(got[name], ref[name], rtol=2e-5, atol=1e-6, err_msg=name)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6),
               state.params, ref_state.params)


def test_micro_batch_size_must_divide_the_batch_and_suit_the_objective():
  dataset = synthetic_dataset()
  with pytest.raises(UserError, match="micro_batch_size 5 must divide batch_size 16"):
    loop.build_experiment(_no_batchnorm_config(5), dataset)
  config = tiny_config("autoencoder")
  config.micro_batch_size = 4
  with pytest.raises(UserError, match="'autoencoder' does not support micro_batch_size"):
    loop.build_experiment(config, dataset)
