"""Pretrain an encoder with a self-supervised objective, then evaluate it and write the report.

    python -m ssljax.pretrain --config=experiments/fmnist_infonce.py[:smoke] --workdir=DIR \
        [--config.key=value ...]

Rerunning the same command on the same DIR resumes from the latest checkpoint. The logic lives in
the library (ssljax.train, ssljax.evaluate) so it can be tested; this file only wires it together.
"""
from __future__ import annotations

import json
import os
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from ssljax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (config, checkpoints, report).")
_DEBUG = flags.DEFINE_bool("debug", False, "Show full tracebacks instead of one-line errors.")


def resolved_config(config) -> dict:
  """The config as saved to config.json: only the chosen encoder's and objective's sections."""
  d = config.to_dict()
  d["encoders"] = {config.encoder: d["encoders"].get(config.encoder, {})}
  d["objectives"] = {config.objective: d["objectives"].get(config.objective, {})}
  return d


def use_cpu_cores(config) -> None:
  """On CPU, split the batch over one host device per core (must run before JAX starts).

  XLA's CPU backend runs one device's step on about one core; one device per core lets the jitted
  step use them all. Results do not change: the step sees the same global batch either way.
  """
  import jax
  count = int(config.cpu_devices) or os.cpu_count() or 1
  try:
    jax.config.update("jax_num_cpu_devices", count)
  except RuntimeError:  # backend already initialised (e.g. inside tests): keep what it has
    pass


def run(config, workdir: str | pathlib.Path) -> dict:
  """Pretrains (or resumes), evaluates and writes the run directory; returns the report."""
  import jax

  from ssljax.evaluate.features import variables_of
  from ssljax.evaluate.report import write_report
  from ssljax.evaluate.run import evaluate
  from ssljax.tracking import MetricsWriter
  from ssljax.train.loop import build_experiment, pretrain

  workdir = pathlib.Path(workdir)
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create workdir {workdir}: {e.strerror}") from None
  is_main = jax.process_index() == 0
  exp = build_experiment(config)
  if is_main:
    (workdir / "config.json").write_text(json.dumps(resolved_config(config), indent=2) + "\n")
  writer = MetricsWriter(workdir, resolved_config(config), config.wandb, is_main)
  try:
    state, summary = pretrain(exp, workdir, writer)
    report = {"dataset": exp.dataset.name, "objective": config.objective,
              "encoder": config.encoder, "pretrain": summary, **evaluate(exp, state)}
    if is_main:
      (workdir / "plots").mkdir(exist_ok=True)
      extra = exp.objective.save_plots(variables_of(state), workdir / "plots")
      write_report(workdir, report, extra)
      probe = report.get("linear_probe", {})
      writer.summary({"probe/top1": probe.get("top1"), "knn/top1": report.get("knn", {}).get("top1"),
                      "align": report.get("align"), "uniform": report.get("uniform")})
  finally:
    writer.close()
  return report


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _WORKDIR.value is None:
    raise UserError("--workdir is required: the directory this run writes to (and resumes from)")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax/absl INFO lines drown the progress bar
  config = _CONFIG.value
  use_cpu_cores(config)
  report = run(config, _WORKDIR.value)
  probe = report.get("linear_probe", {})
  workdir = pathlib.Path(_WORKDIR.value)
  if "top1" in probe:
    print(f"linear probe top-1: {probe['top1']:.4f} ± {probe['top1_ci95']:.4f} "
          f"({probe['seeds']} seeds, {probe['features']} features)")
  print(f"report: {workdir / 'report.md'} (and report.json, plots/)")


def entry_point():
  """Runs ``main`` and turns a UserError into one line on stderr and exit code 2."""
  debug = "--debug" in sys.argv or any(a.startswith("--debug=t") for a in sys.argv)
  try:
    app.run(main)
  except UserError as e:
    if debug:
      raise
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  entry_point()
