"""A run's whole evaluation again, from its latest checkpoint: ``python -m ssljax.evaluate``.

Why: the evaluation protocol is worth changing after the expensive part is done (more probe seeds, a
transfer dataset, a fixed bug in a metric), and a reviewer should be able to regenerate every figure
of a report from the checkpoint alone. :func:`evaluate_run` reads ``DIR/config.json`` (through
``ssljax.rundir``, which owns that format), rebuilds the experiment, restores the latest checkpoint
and goes through the same ``evaluate_and_report`` as ``python -m ssljax.pretrain``; the report's
``pretrain`` section comes from the same builder as the loop's (``ssljax.train.summary``).
Overrides should change evaluation settings only (probe, knn, transfer, views): the model must
still match the checkpoint.
"""
from __future__ import annotations

import json
import pathlib
from typing import Mapping

import jax

from ssljax.errors import UserError, silence_abandoned_coroutines
from ssljax.rundir import claim_workdir, load_run_config


def evaluate_run(workdir, overrides: Mapping | None = None) -> dict:
  """Restores the latest checkpoint of ``workdir``, evaluates it and rewrites the report (report.json,
  report.md, plots/); ``overrides`` are flattened config keys (``{"probe.seeds": 5}``)."""
  workdir = pathlib.Path(workdir)
  config, saved = load_run_config(workdir, overrides)
  if not (workdir / "checkpoints").is_dir():
    raise UserError(f"{workdir} has no checkpoints/ to evaluate; rerun the pretraining command on "
                    "it to finish (or start) the run")
  is_main = jax.process_index() == 0
  with claim_workdir(workdir, is_main):  # not while a run is still writing it
    return _evaluate_locked(workdir, config, saved, is_main)


def restore_latest(exp, workdir: pathlib.Path):
  """The train state of the latest complete checkpoint in ``workdir`` (a UserError if there is none,
  or if it does not fit the experiment the config builds)."""
  from ssljax.train.checkpoint import Checkpoints
  from ssljax.train.loop import initial_state
  checkpoints = Checkpoints(workdir / "checkpoints", keep=exp.config.keep_checkpoints)
  try:
    step = checkpoints.latest_step()
    if step is None:
      raise UserError(f"{workdir / 'checkpoints'} holds no complete checkpoint; rerun the "
                      "pretraining command on this directory to write one")
    try:
      return checkpoints.restore(initial_state(exp), step)
    except Exception as e:  # orbax/tensorstore raise ValueError, KeyError, OSError...
      message = (f"the checkpoint at step {step} in {workdir} does not restore into this code and "
                 f"config ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]}); override "
                 "evaluation settings only")
    silence_abandoned_coroutines()  # the failed restore's read tasks, collected from here on
    raise UserError(message)
  finally:
    checkpoints.close()


def pretrain_section(workdir: pathlib.Path, exp, state) -> dict:
  """The original run's ``pretrain`` section if its report describes this checkpoint (it alone
  knows the wall time), else the same builder's figures from ``metrics.jsonl``."""
  from ssljax.tracking import read_metrics
  from ssljax.train.summary import summary_from_metrics
  step = int(jax.device_get(state.step))
  try:
    previous = json.loads((workdir / "report.json").read_text())["pretrain"]
    if previous.get("steps") == step:
      return {**previous, "evaluated_from_checkpoint": step}
  except (OSError, KeyError, TypeError, json.JSONDecodeError):
    pass
  return {**summary_from_metrics(exp, state, read_metrics(workdir)),
          "evaluated_from_checkpoint": step}


def _evaluate_locked(workdir: pathlib.Path, config, saved: dict, is_main: bool) -> dict:
  from ssljax.evaluate.run import evaluate_and_report
  from ssljax.tracking import MetricsWriter
  from ssljax.train.loop import build_experiment

  exp = build_experiment(config)
  state = restore_latest(exp, workdir)
  writer = MetricsWriter(workdir, saved, config.wandb, is_main)
  try:
    return evaluate_and_report(exp, state, workdir, pretrain_section(workdir, exp, state), writer,
                               is_main)
  finally:
    writer.close()
