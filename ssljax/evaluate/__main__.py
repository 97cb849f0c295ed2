"""Re-run a run's whole evaluation from its checkpoint and rewrite its report.

    python -m ssljax.evaluate --workdir=DIR [--config.probe.seeds=5 --config.transfer.dataset=digits ...]

``--config.*`` overrides use the pretraining syntax; change evaluation settings only (probe, knn,
transfer, views): the model must still match the checkpoint. The logic (reading config.json,
restoring, the report) is ``ssljax.evaluate.from_checkpoint.evaluate_run``; this file parses the
flags, calls it and prints the result.
"""
from __future__ import annotations

import os
import pathlib

from absl import app, flags, logging
from ml_collections import config_flags

from ssljax.base_config import base_config
from ssljax.errors import UserError, run_app
from ssljax.host_memory import reexec_with_tuned_malloc

_CONFIG = config_flags.DEFINE_config_dict("config", base_config(),
                                          "Overrides of the run's config (evaluation settings).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by ssljax.pretrain.")
_DEBUG = flags.DEFINE_bool("debug", False, "Show full tracebacks instead of one-line errors.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _WORKDIR.value is None:
    raise UserError("--workdir is required: the run directory to evaluate")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  from ssljax.rundir import load_run_config
  workdir = pathlib.Path(os.path.expandvars(_WORKDIR.value))
  overrides = config_flags.get_override_values(flags.FLAGS["config"])
  saved_devices = load_run_config(workdir, overrides)[0].cpu_devices
  import jax
  try:  # as in pretraining: one CPU device per core unless the run said otherwise
    jax.config.update("jax_num_cpu_devices", int(saved_devices) or os.cpu_count() or 1)
  except RuntimeError:
    pass
  from ssljax.evaluate.from_checkpoint import evaluate_run
  from ssljax.evaluate.report import result_lines
  print("\n".join(result_lines(evaluate_run(workdir, overrides), workdir)))


def entry_point():
  """Runs ``main`` and turns a UserError into one line on stderr and exit code 2."""
  reexec_with_tuned_malloc()  # before jax is imported: see ssljax/host_memory.py
  run_app(main)


if __name__ == "__main__":
  entry_point()
