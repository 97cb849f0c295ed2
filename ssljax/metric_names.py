"""The one rule for naming training metrics, and the one answer to "which metric is the loss".

Every metric the train step returns is ``<owner>/<metric>``, where the owner is

- a player of the objective (``main`` for single-player objectives; the GAN's ``discriminator``
  and ``generator``): ``loss`` (the objective's loss: the headline), ``total_loss`` (what the
  gradient was taken of, the online probe's loss included for the player that owns the encoder),
  ``grad_norm``, and whatever else its loss reports (``main/acc``, ``generator/fake_score``...);
- ``online_probe``, the harness's linear head (``online_probe/loss``, ``online_probe/acc``);
- a follower, i.e. an EMA copy of some networks (``teacher/momentum``).

The step's own counter ``nonfinite_steps`` and the loop's ``images_per_s`` and ``epoch`` are about
the run, not an owner, and stay bare. The progress bar, the pretraining-loss plot and the report's
``final_loss`` all read :func:`headline_losses`, so they can never disagree. A logged value is the
mean over its ``log_every`` window (``train/loop.py`` MetricsWindow), running counts excepted.
"""
from __future__ import annotations

from typing import Mapping

# Metrics that count since the start of the run: logged as their latest value, never averaged over
# a logging window (everything else is the window's mean, see train/loop.py).
RUNNING_COUNTS = ("nonfinite_steps",)
ONLINE_PROBE = "online_probe"  # owner name of the harness's probe metrics (and of its parameters)


def metric_name(owner: str, metric: str) -> str:
  return f"{owner}/{metric}"


def headline_losses(metrics: Mapping[str, float]) -> dict[str, float]:
  """Each player's loss, in the players' order (one entry for single-player objectives)."""
  if "loss" in metrics:  # metrics.jsonl of runs from before this rule: one unprefixed loss
    return {"loss": metrics["loss"]}
  return {k: v for k, v in metrics.items()
          if k.endswith("/loss") and k.count("/") == 1 and not k.startswith(f"{ONLINE_PROBE}/")}


def headline_loss(metrics: Mapping[str, float]) -> float | None:
  """The report's ``final_loss``: the first player's loss (the GAN's discriminator's)."""
  return next(iter(headline_losses(metrics).values()), None)
