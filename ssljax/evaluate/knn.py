"""Weighted kNN on cosine similarity (Wu et al. 2018, as in DINO/solo-learn): each of the k nearest
training features votes for its label with weight exp(similarity / temperature)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ssljax.evaluate.linear_probe import validation_split
from ssljax.objectives.losses import l2_normalize


@functools.partial(jax.jit, static_argnames=("k",))
def _neighbours(query, bank, *, k):
  """(similarities, indices) of each query's ``k`` nearest bank rows. A jit of its own: XLA:CPU
  keeps a lone top_k as its partial-selection kernel, but fused with the vote's gather below it
  became a full sort of every (query, bank) similarity, 30x slower at the quickstart's 60k bank."""
  return jax.lax.top_k(query @ bank.T, k)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _vote(sims, neighbour_labels, *, num_classes, temperature):
  # Weights relative to the nearest neighbour (top_k sorts, so column 0 is the largest): the same
  # argmax, and exp(sim / temperature) cannot overflow float32 (it does above sim / t = 88).
  weights = jnp.exp((sims - sims[:, :1]) / temperature)
  votes = jax.nn.one_hot(neighbour_labels, num_classes) * weights[..., None]
  return jnp.argmax(votes.sum(axis=1), axis=-1)


def _predict(query, bank, bank_labels, *, k, num_classes, temperature):
  sims, idx = _neighbours(query, bank, k=k)
  return _vote(sims, bank_labels[idx], num_classes=num_classes, temperature=temperature)


def knn_accuracy(train_x, train_y, test_x, test_y, num_classes, k=200, temperature=0.1,
                 chunk=1024) -> dict:
  bank = l2_normalize(jnp.asarray(train_x, jnp.float32))  # features may be stored in bfloat16
  queries = l2_normalize(jnp.asarray(test_x, jnp.float32))
  k = min(k, len(train_x))
  preds = [np.asarray(_predict(queries[i:i + chunk], bank, jnp.asarray(train_y), k=k,
                               num_classes=num_classes, temperature=temperature))
           for i in range(0, len(test_x), chunk)]
  top1 = float(np.mean(np.concatenate(preds) == np.asarray(test_y)))
  return {"top1": top1, "k": k, "temperature": temperature}


def knn_report(train_x, train_y, test_x, test_y, num_classes, k, temperature,
               val_fraction) -> dict:
  """The report's ``knn`` section: test top-1 with all of train as the bank, and ``val_top1``, each
  validation image (the linear probe's validation split) classified among the other train images,
  the figure a choice between runs may read without touching test."""
  result = knn_accuracy(train_x, train_y, test_x, test_y, num_classes, k=k, temperature=temperature)
  val_idx, fit_idx = validation_split(len(train_x), val_fraction)
  result["val_top1"] = knn_accuracy(train_x[fit_idx], train_y[fit_idx], train_x[val_idx],
                                    train_y[val_idx], num_classes, k=k,
                                    temperature=temperature)["top1"]
  return result
