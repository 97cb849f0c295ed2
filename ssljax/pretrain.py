"""Pretrain an encoder with a self-supervised objective, then evaluate it and write the report.

    python -m ssljax.pretrain --config=experiments/fmnist_infonce.py[:smoke] --workdir=DIR \
        [--config.key=value ...]

Rerunning the same command on the same DIR resumes from the latest checkpoint. The logic lives in
the library (ssljax.train, ssljax.evaluate) so it can be tested; this file only wires it together.
"""
from __future__ import annotations

import os
import pathlib
import shlex
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from ssljax.errors import UserError, run_app
from ssljax.host_memory import reexec_with_tuned_malloc

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (config, checkpoints, report).")
_DEBUG = flags.DEFINE_bool("debug", False, "Show full tracebacks instead of one-line errors.")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first: one "
                               "process per host, coordinator from SLURM / TPU / MPI environment.")


def init_distributed() -> None:
  """``jax.distributed.initialize()`` from the scheduler's environment (SLURM, Open MPI, TPU pods),
  or without a scheduler from JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES
  and JAX_PROCESS_ID (tests/test_multihost.py runs two processes so on localhost; JAX itself reads
  only the address). CPU processes exchange collectives over gloo."""
  import jax
  explicit = {}
  for env, arg in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
    if os.environ.get(env):
      try:
        explicit[arg] = int(os.environ[env])
      except ValueError:
        raise UserError(f"{env}={os.environ[env]!r} must be an integer") from None
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**explicit)


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

  from ssljax.rundir import claim_workdir

  workdir = pathlib.Path(workdir)
  is_main = jax.process_index() == 0
  with claim_workdir(workdir, is_main):  # creates it, checks it is writable, locks it till the end
    return _run(config, workdir, is_main)


def _run(config, workdir: pathlib.Path, is_main: bool) -> dict:
  from ssljax.base_config import base_config
  from ssljax.evaluate.run import evaluate_and_report
  from ssljax.rundir import check_resumable, resolved_config, write_config
  from ssljax.tracking import MetricsWriter
  from ssljax.train.loop import build_experiment, pretrain

  if is_main:  # before loading any data
    defaults = base_config()
    defaults.encoder, defaults.objective = config.encoder, config.objective
    check_resumable(workdir, resolved_config(config), resolved_config(defaults))
  exp = build_experiment(config)
  if is_main:
    write_config(workdir, resolved_config(config))
  writer = MetricsWriter(workdir, resolved_config(config), config.wandb, is_main)
  try:
    state, summary = pretrain(exp, workdir, writer)
    # The same path as `python -m ssljax.evaluate --workdir=DIR` (report, plots, W&B summary).
    report = evaluate_and_report(exp, state, workdir, summary, writer, is_main)
  finally:
    writer.close()
  return report


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _MULTIHOST.value:  # before anything touches the backend
    import jax
    try:
      init_distributed()
    except (ValueError, RuntimeError) as e:
      raise UserError(f"--multihost: jax.distributed.initialize() failed ({str(e).strip()[:200]}); "
                      "launch under SLURM (launch/slurm.sbatch) or on a TPU pod "
                      "(launch/tpu_pod.sh), set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and "
                      "JAX_PROCESS_ID, or drop --multihost on one host") from None
  if _WORKDIR.value is None:
    raise UserError("--workdir is required: the directory this run writes to (and resumes from)")
  # $VARS expand, so a W&B sweep agent (no shell) can give each run its own directory:
  # --workdir=runs/sweeps/NAME/$WANDB_RUN_ID
  workdir = os.path.expandvars(_WORKDIR.value)
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax/absl INFO lines drown the progress bar
  config = _CONFIG.value
  use_cpu_cores(config)
  from ssljax.accelerator import warn_if_accelerator_unused
  warn_if_accelerator_unused()  # a GPU node with the CPU build of jax would train on the CPU
  report = run(config, workdir)
  import jax
  if jax.process_index() != 0:
    return  # the report and its summary line are process 0's; the others would repeat it
  from ssljax.evaluate.report import result_lines
  print("\n".join(result_lines(report, pathlib.Path(workdir))))


def resume_command() -> str:
  """The command that continues this run: the same interpreter, module and flags, from here."""
  command = shlex.join([sys.executable, "-m", "ssljax.pretrain", *sys.argv[1:]])
  return f"cd {shlex.quote(os.getcwd())} && {command}"


def entry_point():
  """Runs ``main``: a UserError (an unknown ``--config.KEY`` too, caught where absl parses the
  flags) becomes one line on stderr and exit code 2; a preemption (SIGTERM, SIGINT) after its
  checkpoint becomes how to resume and exit code 0; anything else is a bug and keeps its traceback."""
  reexec_with_tuned_malloc()  # before jax is imported: see ssljax/host_memory.py
  from ssljax.train.stopping import Preempted
  try:
    run_app(main)
  except Preempted as e:
    print(f"{e}; checkpoint saved in {e.checkpoint_dir}. Resume with:\n  {resume_command()}",
          flush=True)
    sys.exit(0)


if __name__ == "__main__":
  entry_point()
