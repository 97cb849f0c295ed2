"""Re-run a run's whole evaluation from its checkpoint and rewrite its report.

    python -m ssljax.evaluate --workdir=DIR [--config.probe.seeds=5 --config.transfer.dataset=digits ...]

Why: the evaluation protocol is worth changing after the expensive part is done (more probe seeds, a
transfer dataset, a fixed bug in a metric), and a reviewer should be able to regenerate every figure
of a report from the checkpoint alone. This reads ``DIR/config.json`` (the resolved config the run
trained with; defaults added since fill the gaps), rebuilds the experiment, restores the latest
checkpoint and goes through the same ``evaluate_and_report`` as ``python -m ssljax.pretrain``.
``--config.*`` overrides use the pretraining syntax; change evaluation settings only (probe, knn,
transfer, views): the model must still match the checkpoint.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import sys

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from ssljax.base_config import base_config
from ssljax.errors import UserError, run_app
from ssljax.host_memory import reexec_with_tuned_malloc

_CONFIG = config_flags.DEFINE_config_dict("config", base_config(),
                                          "Overrides of the run's config (evaluation settings).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by ssljax.pretrain.")
_DEBUG = flags.DEFINE_bool("debug", False, "Show full tracebacks instead of one-line errors.")


def _tuples(value):
  """JSON lists back to the tuples configs hold (so overrides type-check against them)."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def _merge(defaults: dict, saved: dict) -> dict:
  out = dict(defaults)
  for key, value in saved.items():
    if isinstance(value, dict) and isinstance(out.get(key), dict):
      out[key] = _merge(out[key], value)
    else:
      out[key] = value
  return out


def load_run_config(workdir: pathlib.Path, overrides: dict | None = None
                    ) -> tuple[ml_collections.ConfigDict, dict]:
  """(config to rebuild the run with, the saved config.json as a dict)."""
  path = workdir / "config.json"
  if not path.is_file():
    raise UserError(f"{workdir} has no config.json, so it is not a run directory; "
                    "`python -m ssljax.pretrain --workdir=DIR` writes one")
  try:
    saved = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise UserError(f"{path} is not valid JSON ({e})") from None
  saved = {k: v for k, v in saved.items() if k != "provenance"}  # about the run, not its config
  if "online_probe_features" not in saved:  # runs from before the key: the head read probe.features
    saved = {**saved, "online_probe_features": saved.get("probe", {}).get("features", "pooled")}
  config = ml_collections.ConfigDict(_tuples(_merge(base_config().to_dict(), saved)))
  try:
    config.update_from_flattened_dict(dict(overrides or {}))
  except (KeyError, TypeError) as e:
    raise UserError(f"cannot apply the overrides to the run's config: {e}") from None
  return config, saved


def _pretrain_summary(workdir: pathlib.Path, exp, step: int) -> dict:
  """The original run's ``pretrain`` section if it describes this checkpoint, else what the
  checkpoint and metrics.jsonl tell."""
  from ssljax.metric_names import headline_loss
  from ssljax.tracking import read_metrics
  try:
    previous = json.loads((workdir / "report.json").read_text())["pretrain"]
    if previous.get("steps") == step:
      return previous
  except (OSError, KeyError, json.JSONDecodeError):
    pass
  records = [r for r in read_metrics(workdir) if r["step"] <= step]
  last = records[-1] if records else {}
  speeds = [r["images_per_s"] for r in records if isinstance(r.get("images_per_s"), (int, float))
            and math.isfinite(r["images_per_s"])]
  return {"steps": step, "epochs": step / exp.stream.steps_per_epoch,
          "batch_size": exp.config.batch_size, "devices": exp.mesh.size, "resumed_from_step": None,
          "wall_s": None, "images_per_s": sum(speeds) / len(speeds) if speeds else None,
          "final_loss": headline_loss(last), "final_metrics": last}


def evaluate_run(workdir, overrides: dict | None = None) -> dict:
  """Restores the latest checkpoint of ``workdir``, evaluates it and rewrites the report."""
  import jax

  from ssljax.rundir import claim_workdir

  workdir = pathlib.Path(workdir)
  config, saved = load_run_config(workdir, overrides)
  if not (workdir / "checkpoints").is_dir():
    raise UserError(f"{workdir} has no checkpoints/ to evaluate; rerun the pretraining command on "
                    "it to finish (or start) the run")
  is_main = jax.process_index() == 0
  with claim_workdir(workdir, is_main):  # not while a run is still writing it
    return _evaluate_locked(workdir, config, saved, is_main)


def _evaluate_locked(workdir: pathlib.Path, config, saved: dict, is_main: bool) -> dict:
  from ssljax.evaluate.run import evaluate_and_report
  from ssljax.tracking import MetricsWriter
  from ssljax.train.checkpoint import Checkpoints
  from ssljax.train.loop import build_experiment, initial_state

  exp = build_experiment(config)
  checkpoints = Checkpoints(workdir / "checkpoints", keep=config.keep_checkpoints)
  try:
    step = checkpoints.latest_step()
    if step is None:
      raise UserError(f"{workdir / 'checkpoints'} holds no complete checkpoint; rerun the "
                      "pretraining command on this directory to write one")
    try:
      state = checkpoints.restore(initial_state(exp), step)
    except Exception as e:  # orbax/tensorstore raise ValueError, KeyError, OSError...
      raise UserError(f"the checkpoint at step {step} in {workdir} does not restore into this "
                      f"code and config ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]});"
                      " override evaluation settings only") from None
  finally:
    checkpoints.close()
  writer = MetricsWriter(workdir, saved, config.wandb, is_main)
  try:
    summary = {**_pretrain_summary(workdir, exp, step), "evaluated_from_checkpoint": step}
    report = evaluate_and_report(exp, state, workdir, summary, writer, is_main)
  finally:
    writer.close()
  return report


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _WORKDIR.value is None:
    raise UserError("--workdir is required: the run directory to evaluate")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  workdir = pathlib.Path(os.path.expandvars(_WORKDIR.value))
  overrides = config_flags.get_override_values(flags.FLAGS["config"])
  saved_devices = load_run_config(workdir, overrides)[0].cpu_devices
  import jax
  try:  # as in pretraining: one CPU device per core unless the run said otherwise
    jax.config.update("jax_num_cpu_devices", int(saved_devices) or os.cpu_count() or 1)
  except RuntimeError:
    pass
  report = evaluate_run(workdir, overrides)
  probe = report.get("linear_probe", {})
  if "top1" in probe:
    print(f"linear probe top-1: {probe['top1']:.4f} ± {probe['top1_ci95']:.4f} "
          f"({probe['seeds']} seeds, {probe['features']} features)")
  print(f"report: {workdir / 'report.md'} (and report.json, plots/)")


def entry_point():
  """Runs ``main`` and turns a UserError into one line on stderr and exit code 2."""
  reexec_with_tuned_malloc()  # before jax is imported: see ssljax/host_memory.py
  run_app(main)


if __name__ == "__main__":
  entry_point()
