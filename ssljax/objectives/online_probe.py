"""The online probe: a linear head on ``stop_gradient`` of the encoder's features, trained during
pretraining for free (BYOL's trick) so its accuracy tracks the representation as training goes.

It belongs to the harness, not to an objective: the generic step adds its loss, once, for every
objective, reading the ``probe_input`` the encoder's player returns (``LossOutput``), and refuses an
encoder player that returns none. The stop-gradient means it never changes the encoder.

Why its loss joins the encoder's player (same optimizer, same update) instead of being a player of
its own: that is how it was trained before the probe moved out of the objectives, so every
objective's results are unchanged bit for bit (fixed-seed smoke runs of all six: every metric
identical); the head is one linear layer, so sharing the player's learning-rate schedule costs
nothing, and a NaN in it skips the same step as the encoder's. With AdamW a separate player would give the head the same updates anyway (Adam is
per-parameter); it would only move the encoder player's ``grad_norm`` (and, with ``grad_clip``,
its clipping), figures that would no longer be comparable with earlier runs'.
"""
from __future__ import annotations

import jax
import numpy as np

from ssljax.metric_names import ONLINE_PROBE, metric_name
from ssljax.models.heads import LinearHead
from ssljax.objectives import losses

NETWORK = ONLINE_PROBE  # its parameters are params["online_probe"], owned by the encoder's player


class OnlineProbe:
  def __init__(self, num_classes: int):
    self.head = LinearHead(num_classes)

  def init(self, key: jax.Array, features: jax.Array) -> dict:
    """The head's parameters for inputs shaped like ``features`` (B, D)."""
    return self.head.init({"params": key}, features)["params"]

  def logits(self, params: dict, features) -> jax.Array:
    return self.head.apply({"params": params}, features)

  def loss(self, params: dict, features: jax.Array, labels: jax.Array) -> tuple[jax.Array, dict]:
    """(cross-entropy of the head on stop_gradient(features), its metrics); ``params`` is the
    whole params dict (the step differentiates it with the player's other networks)."""
    logits = self.logits(params[NETWORK], jax.lax.stop_gradient(features))
    loss = losses.cross_entropy(logits, labels)
    return loss, {metric_name(ONLINE_PROBE, "loss"): loss,
                  metric_name(ONLINE_PROBE, "acc"): losses.accuracy(logits, labels)}

  def top1(self, params: dict, features: np.ndarray, labels: np.ndarray) -> float:
    """Test accuracy of the trained head on precomputed features (the report's online_probe)."""
    features = np.asarray(features, np.float32)  # the evaluation may store them in bfloat16
    logits = np.asarray(jax.jit(self.logits)(params[NETWORK], features))
    return float(np.mean(np.argmax(logits, -1) == labels))


def init_variables(objective, probe: OnlineProbe | None, init_key: jax.Array, images) -> dict:
  """The objective's variables with the probe's head in ``params["online_probe"]``: a run's
  initial networks (``train.state``) and the untrained-encoder control (``evaluate.run``) alike.
  The head takes the second of ``split(init_key, 2)`` (the encoder the first), as when objectives
  initialised it themselves; its parameters depend only on the input's shape."""
  variables = objective.init(init_key, images)
  if probe is not None:
    pooled, stages = objective.features(variables, images)
    variables["params"][NETWORK] = probe.init(jax.random.split(init_key, 2)[1],
                                              objective.probe_input(pooled, stages))
  return variables


def build_online_probe(enabled: bool, num_classes: int) -> OnlineProbe | None:
  """The run's probe: ``config.online_probe`` on labelled data, else none."""
  return OnlineProbe(num_classes) if enabled and num_classes else None
