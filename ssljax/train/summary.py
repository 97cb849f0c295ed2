"""The report's ``pretrain`` section, built in one place.

Two paths describe a pretraining run: the loop at the end of training (it measured the wall time and
throughput itself) and ``python -m ssljax.evaluate`` from a checkpoint (it reads what the loop logged
to ``metrics.jsonl``). Both call :func:`pretrain_summary`, so which metric is "the loss" (one
player's ``*/loss``) is decided once, by ``ssljax.metric_names.headline_loss``, and the two can
never disagree about a run.
"""
from __future__ import annotations

import math

import jax

from ssljax.metric_names import headline_loss
from ssljax.train.checkpoint import state_fingerprint

# What the loop adds to each metrics.jsonl record besides the step's own metrics.
LOGGED_BY_THE_LOOP = ("step", "images_per_s", "epoch")


def pretrain_summary(exp, state, final_metrics: dict, *, resumed_from_step: int | None,
                     wall_s: float | None, images_per_s: float | None) -> dict:
  """The ``pretrain`` section of report.json for ``state`` (trained to ``state.step``) of ``exp``,
  whose last logged metrics were ``final_metrics``."""
  steps = int(jax.device_get(state.step))
  return {
      "steps": steps,
      "epochs": steps / exp.stream.steps_per_epoch,
      "batch_size": exp.config.batch_size,
      "devices": exp.mesh.size,
      "resumed_from_step": resumed_from_step,
      "wall_s": wall_s,
      "images_per_s": images_per_s,
      "final_loss": headline_loss(final_metrics),
      "final_metrics": final_metrics,
      "nonfinite_skipped": int(jax.device_get(state.nonfinite["count"])),
      # Two runs whose final parameters, running statistics, followers and objective state are
      # bit-identical have the same fingerprint (optimizer state aside).
      "params_fingerprint": state_fingerprint(state),
  }


def last_logged(records: list[dict], step: int) -> dict:
  """The step's own metrics in the last ``metrics.jsonl`` record at or before ``step``."""
  records = [r for r in records if r["step"] <= step]
  return {k: v for k, v in (records[-1] if records else {}).items() if k not in LOGGED_BY_THE_LOOP}


def summary_from_metrics(exp, state, records: list[dict]) -> dict:
  """:func:`pretrain_summary` from what the loop logged (``metrics.jsonl`` records) up to the
  state's step: the wall time is unknown there, the throughput the mean of the logged intervals."""
  step = int(jax.device_get(state.step))
  records = [r for r in records if r["step"] <= step]
  last = last_logged(records, step)
  speeds = [r["images_per_s"] for r in records if isinstance(r.get("images_per_s"), (int, float))
            and math.isfinite(r["images_per_s"])]
  return pretrain_summary(exp, state, last, resumed_from_step=None, wall_s=None,
                          images_per_s=sum(speeds) / len(speeds) if speeds else None)
