"""Running a suite's plan: one ``python -m ssljax.pretrain`` process per (row, seed), one at a time.

Why a process per run rather than ``ssljax.pretrain.run`` in this one: a run's memory (the dataset,
compiled programs, 60k-image feature matrices) is returned to the system when it ends, a crash or
an out-of-memory kill costs one run instead of the table, each run chooses its own CPU device count
before JAX starts (possible once per process), and the command a run was made with is exactly the
one a person would type, printed at the top of its log. Start-up and compilation cost ~15 s, against
minutes of pretraining and evaluation per run.

A run whose ``report.json`` exists is finished and skipped; any other is (re)started with the same
command, and the pretraining CLI resumes it from its latest checkpoint. A child runs in its own
session, so the runner alone receives Ctrl-C or a scheduler's SIGTERM and forwards it once: the
child checkpoints and exits, and the runner stops after it. If the runner itself is killed (``kill
-9``), Linux kills its child too (``PR_SET_PDEATHSIG``), so no orphan keeps training and holding the
run directory's lock; the next invocation resumes that run from its last periodic checkpoint, as
after any ``kill -9``. (SIGKILL rather than SIGTERM: the kernel sends the parent-death signal again
each time the child is passed to another of the dying runner's threads, and a second SIGTERM would
interrupt the child's own final save.)
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable

from tqdm.auto import tqdm

from ssljax.benchmark.suite import RunSpec, Suite


@dataclasses.dataclass
class Outcome:
  launched: list[RunSpec] = dataclasses.field(default_factory=list)
  skipped: list[RunSpec] = dataclasses.field(default_factory=list)
  failed: list[RunSpec] = dataclasses.field(default_factory=list)
  stopped_by: str | None = None  # the signal that stopped the runner, if one did


def read_report(run: RunSpec) -> dict | None:
  try:
    return json.loads((run.workdir / "report.json").read_text())
  except (OSError, ValueError):
    return None


# --- the estimate ---------------------------------------------------------------------------------

def prior_seconds(suite: Suite, run: RunSpec) -> float:
  """The suite file's prior for one run: pretraining at the prior throughput times the row's cost,
  plus the evaluation."""
  prior = suite.config.get("estimate") or {}
  images = float(prior.get("train_images", 60000))
  return (run.epochs * images / float(prior.get("images_per_s", 300.0)) * run.row.cost
          + float(prior.get("eval_s", 180.0)))


def measured_seconds(report: dict, epochs: float) -> float | None:
  """What a run of ``epochs`` of this report's row takes, from its measured throughput (robust to
  resumes: a resumed run's wall time covers its last part only) and evaluation time."""
  pre = report.get("pretrain") or {}
  try:
    per_epoch = pre["steps"] * pre["batch_size"] / pre["epochs"] / pre["images_per_s"]
  except (KeyError, TypeError, ZeroDivisionError):
    # A report rebuilt from a results record has no step count: its wall time per epoch then.
    if not (pre.get("wall_s") and pre.get("epochs")):
      return None
    per_epoch = pre["wall_s"] / pre["epochs"]
  return epochs * per_epoch + float(report.get("eval_wall_s") or 0.0)


def estimate(suite: Suite, pending: list[RunSpec], finished: list[RunSpec]) -> tuple[float, str]:
  """(seconds for ``pending``, how the figure was made). A row measured here is estimated from its
  own runs; the others from the prior, scaled by how the measured runs compared with theirs (the
  machine's load today)."""
  by_row: dict[str, list[float]] = {}
  ratios = []
  for run in finished:
    report = read_report(run)
    seconds = measured_seconds(report, run.epochs) if report else None
    if seconds:
      by_row.setdefault(run.row.name, []).append(seconds / run.epochs)
      ratios.append(seconds / prior_seconds(suite, run))
  scale = sum(ratios) / len(ratios) if ratios else 1.0
  total = 0.0
  for run in pending:
    per_epoch = by_row.get(run.row.name)
    total += (run.epochs * sum(per_epoch) / len(per_epoch) if per_epoch
              else prior_seconds(suite, run) * scale)
  prior = suite.config.get("estimate") or {}
  how = (f"prior: {prior.get('images_per_s', 300.0):g} images/s x row cost + "
         f"{prior.get('eval_s', 180.0):g} s evaluation per run")
  if ratios:
    how += f", scaled x{scale:.2f} by the {len(ratios)} run(s) measured here"
  return total, how


def duration(seconds: float) -> str:
  if seconds < 90:
    return f"{seconds:.0f} s"
  if seconds < 5400:
    return f"{seconds / 60:.1f} min"
  return f"{seconds / 3600:.1f} h"


# --- running ----------------------------------------------------------------------------------------

# The child's first moments: ask Linux for SIGKILL when the runner dies (``PR_SET_PDEATHSIG``, kept
# across exec), give up if the runner is already gone, then become the pretraining command. A
# fresh single-threaded interpreter does this, not ``preexec_fn``: that runs Python between fork
# and exec of the runner, whose JAX threads may hold locks the child then waits on forever.
DIE_WITH_PARENT = """
import ctypes, os, signal, sys
try:
  ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
except (OSError, AttributeError):
  pass
if os.getppid() != int(sys.argv[1]):
  sys.exit("the runner that started this run has gone")
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


def child_command(run: RunSpec) -> list[str]:
  """``run.command`` (``python -m ssljax.pretrain ...``), started through DIE_WITH_PARENT on Linux."""
  if not sys.platform.startswith("linux"):
    return list(run.command)
  return [sys.executable, "-c", DIE_WITH_PARENT, str(os.getpid()), *run.command[1:]]


class _ForwardStopSignals:
  """While a child runs: SIGINT/SIGTERM to the runner go to the child (it checkpoints and exits)."""

  def __init__(self, process: subprocess.Popen):
    self.process, self.signal_name, self.previous = process, None, {}

  def _forward(self, signum, frame):
    self.signal_name = signal.Signals(signum).name
    if self.process.poll() is None:
      self.process.send_signal(signum)  # a second one acts at once: the child's default again

  def __enter__(self):
    self.previous = {s: signal.signal(s, self._forward) for s in (signal.SIGINT, signal.SIGTERM)}
    return self

  def __exit__(self, *exc):
    for s, handler in self.previous.items():
      signal.signal(s, handler)


def launch(run: RunSpec) -> tuple[int, str | None]:
  """Runs ``run.command`` with its output appended to ``run.log``; returns (exit code, the name of
  a stop signal forwarded to it or None)."""
  run.log.parent.mkdir(parents=True, exist_ok=True)
  with open(run.log, "a") as log:
    log.write(f"\n$ {shlex.join(run.command)}\n")
    log.flush()
    process = subprocess.Popen(child_command(run), stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    with _ForwardStopSignals(process) as forwarded:
      code = process.wait()
  return code, forwarded.signal_name


def tail(path, lines: int = 6) -> str:
  try:
    return "\n".join("    " + line for line in path.read_text().splitlines()[-lines:])
  except OSError:
    return "    (no log)"


def run_plan(runs: list[RunSpec], after_each: Callable[[RunSpec], None] | None = None,
             describe: Callable[[dict], str] | None = None) -> Outcome:
  """Runs every unfinished run of ``runs`` in order; ``after_each`` is called after each finished
  one (the aggregation, so the table is current whenever the runner stops)."""
  outcome = Outcome(skipped=[r for r in runs if r.finished()])
  pending = [r for r in runs if not r.finished()]
  bar = tqdm(total=len(pending), desc="suite", unit="run", dynamic_ncols=True,
             disable=not sys.stderr.isatty())
  try:
    for i, run in enumerate(pending, 1):
      bar.set_postfix_str(run.label)
      how = "resuming from its checkpoint" if run.started() else "starting"
      tqdm.write(f"[{i}/{len(pending)}] {run.label}: {how} (log: {run.log})")
      t0 = time.perf_counter()
      code, stop = launch(run)
      wall = time.perf_counter() - t0
      outcome.launched.append(run)
      if run.finished():
        report = read_report(run) or {}
        tqdm.write(f"[{i}/{len(pending)}] {run.label}: done in {duration(wall)}"
                   + (f"; {describe(report)}" if describe else ""))
        if after_each:
          after_each(run)
      elif stop:
        outcome.stopped_by = stop
        tqdm.write(f"[{i}/{len(pending)}] {run.label}: stopped by {stop} after {duration(wall)} "
                   "(checkpointed); rerun the same command to continue")
        break
      else:
        outcome.failed.append(run)
        tqdm.write(f"[{i}/{len(pending)}] {run.label}: FAILED (exit code {code}) after "
                   f"{duration(wall)}; the end of {run.log}:\n{tail(run.log)}")
      bar.update(1)
  except KeyboardInterrupt:  # Ctrl-C between runs (during one, it goes to the child): nothing lost
    outcome.stopped_by = "SIGINT"
    tqdm.write("stopped by SIGINT between runs; rerun the same command to continue")
  finally:
    bar.close()
  return outcome


# --- --check ------------------------------------------------------------------------------------

# A rerun on the same machine and device count gives bit-identical parameters, hence identical
# features and probes. Elsewhere floating-point rounding differs; half a point of top-1 (50 of
# 10,000 test images) is within the probe-seed noise of this table and well below a row's CI.
CHECK_TOLERANCE = 0.005
CHECKED = (("linear probe, pooled", "linear_probes.pooled.top1"),
           ("linear probe, last stage", "linear_probes.last_stage.top1"),
           ("kNN", "knn.top1"), ("online probe", "online_probe.top1"))


def compare_reports(stored: dict, new: dict, tolerance: float = CHECK_TOLERANCE
                    ) -> tuple[bool, list[str]]:
  """(whether ``new`` reproduces ``stored``'s probe figures within ``tolerance``, one line each)."""
  from ssljax.evaluate.figures import format_value, value_at
  a, b = (r.get("pretrain", {}).get("params_fingerprint") for r in (stored, new))
  lines = [f"params fingerprint: identical ({a[:16]})" if a is not None and a == b else
           f"params fingerprint: DIFFERS ({str(a)[:16]} stored, {str(b)[:16]} now; expected only "
           "on another machine or device count)"]
  ok = True
  for label, key in CHECKED:
    x, y = value_at(stored, key), value_at(new, key)
    if x is None and y is None:
      continue  # a figure neither run has (no online probe): nothing to reproduce
    good = x is not None and y is not None and abs(x - y) <= tolerance
    ok &= good
    diff = "missing" if x is None or y is None else f"|diff| {abs(x - y):.4f}"
    lines.append(f"{label}: {format_value(y)} now, {format_value(x)} stored ({diff}; tolerance "
                 f"{tolerance}) {'ok' if good else 'DIFFERS'}")
  return ok, lines


def stored_report(stored: RunSpec) -> dict:
  """The report a check compares with; a UserError when the run has not finished."""
  from ssljax.errors import UserError
  reference = read_report(stored)
  if reference is None:
    raise UserError(f"{stored.label} has no finished run to check against ({stored.workdir} has no "
                    "report.json); run the suite first")
  return reference


def check_run(reference: dict, stored: RunSpec, scratch: RunSpec) -> tuple[bool, list[str]]:
  """Reruns ``stored``'s command into ``scratch`` (emptied first) and compares the new report with
  ``reference`` (the stored run's); returns (reproduced, lines to print)."""
  shutil.rmtree(scratch.workdir, ignore_errors=True)  # a scratch copy: always from scratch
  scratch.log.unlink(missing_ok=True)
  t0 = time.perf_counter()
  code, stop = launch(scratch)
  wall = time.perf_counter() - t0
  new = read_report(scratch)
  if new is None:
    why = f"stopped by {stop}" if stop else f"exit code {code}"
    return False, [f"check {stored.label}: the rerun did not finish ({why}); the end of "
                   f"{scratch.log}:", tail(scratch.log)]
  ok, lines = compare_reports(reference, new)
  then = measured_seconds(reference, stored.epochs)
  head = (f"check {stored.label}: {'reproduces' if ok else 'does NOT reproduce'} the stored "
          f"figures; the rerun took {duration(wall)}"
          + (f" (the stored run about {duration(then)})" if then else "")
          + f", in {scratch.workdir}")
  return ok, [head, *("  " + line for line in lines)]
