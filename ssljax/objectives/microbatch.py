"""Micro-batching for losses that couple the whole batch: large global batches on small memory,
with every negative still global (``config.micro_batch_size``).

InfoNCE cannot simply accumulate gradients over micro-batches: each anchor's negatives are the
other 2N-2 views of the *global* batch, so the loss is not a sum of per-micro-batch losses.
Gradient caching (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup") splits the computation at the embeddings instead: (1) embed every micro-batch
without keeping activations, (2) compute the loss and its gradient with respect to all the
embeddings on the full batch, (3) for each micro-batch, recompute its forward pass and
back-propagate its slice of the embedding gradient into the parameters.

In JAX that is exactly what reverse-mode autodiff does with :func:`map_micro_batches`: a
``lax.map`` (a scan) over micro-batches of a ``jax.checkpoint``-ed embedding function. The forward
scan keeps only each micro-batch's outputs; the backward scan rematerialises one micro-batch's
activations at a time and pulls back its embedding cotangents. Peak activation memory is one
micro-batch's instead of the batch's, for the cost of a second forward pass (GradCache's trade);
the loss and gradient are those of the full batch up to floating-point summation order
(``tests/test_microbatch.py``).

BatchNorm is the exception, and it is documented rather than hidden: each micro-batch is
normalised with its own statistics (as in GradCache, whose forward passes are per micro-batch),
so with BatchNorm layers in the encoder or projector the micro-batched loss is a slightly
different function from the full-batch one (statistics over ``micro_batch_size`` images instead of
``batch_size``). The running averages the probes use are updated with the mean of the
micro-batches' statistics. Encoders without BatchNorm (``mlp``, ``lenet5``, ``alexnet``,
``googlenet``) and a projector without hidden layers (``projector_dims=(D,)``) give the full-batch
gradient.

Micro-batch ``m`` is rows ``m, m + M, m + 2M, ...`` of the batch (M micro-batches), not a
contiguous block: with the batch sharded over the ``data`` axis in contiguous blocks, every device
then holds its own rows of every micro-batch, so each micro-step uses all devices with no
communication, provided ``micro_batch_size`` is a multiple of the device count.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ssljax.errors import UserError


def num_micro_batches(batch_size: int, micro_batch_size: int) -> int:
  """How many micro-batches a global batch splits into (1 = off: ``micro_batch_size`` 0 or >=
  ``batch_size``)."""
  if not micro_batch_size or micro_batch_size >= batch_size:
    return 1
  if micro_batch_size < 0 or batch_size % micro_batch_size:
    raise UserError(f"micro_batch_size {micro_batch_size} must divide batch_size {batch_size} "
                    "(0 = no micro-batching)")
  return batch_size // micro_batch_size


def split(tree: Any, num: int) -> Any:
  """(B, ...) leaves -> (num, B // num, ...): micro-batch m holds rows m, m + num, m + 2 num, ..."""
  def one(x):
    return jnp.moveaxis(x.reshape(x.shape[0] // num, num, *x.shape[1:]), 1, 0)
  return jax.tree.map(one, tree)


def merge(tree: Any) -> Any:
  """The inverse of :func:`split`: (num, B // num, ...) leaves -> (B, ...) in the original order."""
  def one(x):
    return jnp.moveaxis(x, 0, 1).reshape(x.shape[0] * x.shape[1], *x.shape[2:])
  return jax.tree.map(one, tree)


def map_micro_batches(fn: Callable[[Any, dict, jax.Array], tuple[Any, dict]], inputs: Any,
                      batch_stats: dict, key: jax.Array, num: int) -> tuple[Any, dict]:
  """``fn(inputs, batch_stats, key) -> (outputs, new_batch_stats)`` over ``num`` micro-batches.

  ``inputs``' leaves share a leading batch axis; the returned ``outputs`` are every micro-batch's,
  merged back in the original row order, and ``new_batch_stats`` the mean of the micro-batches'
  (each starts from ``batch_stats``, so the mean moves the running averages by the mean of their
  batch statistics). Under ``jax.grad`` each micro-batch's activations are recomputed in the
  backward pass (see the module docstring). ``num == 1`` calls ``fn`` once, unchanged.
  """
  if num == 1:
    return fn(inputs, batch_stats, key)
  body = jax.checkpoint(lambda args: fn(args[0], batch_stats, args[1]), prevent_cse=False)
  keys = jax.vmap(lambda m: jax.random.fold_in(key, m))(jnp.arange(num))
  outputs, stats = jax.lax.map(body, (split(inputs, num), keys))
  return merge(outputs), jax.tree.map(lambda s: jnp.mean(s, axis=0), stats)
