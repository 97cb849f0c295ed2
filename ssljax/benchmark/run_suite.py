"""What ``python -m ssljax.benchmark`` does, as functions: fill in the table, the learning curve, or
check one run. Each prints its plan and estimate before anything starts, runs what is missing, and
re-aggregates after every finished run, so the table on disk is current whenever it stops. A run
recorded in the committed results JSON is finished too, on a machine without its directory
(``aggregate.recorded_runs``): the table fills in over sittings on fresh clones.
"""
from __future__ import annotations

import pathlib
import shlex

from ssljax.benchmark import runner
from ssljax.benchmark.aggregate import (best_by_family, build_document, every_run, recorded_runs,
                                        report_from_record)
from ssljax.benchmark.results_page import write_results
from ssljax.benchmark.suite import (Row, RunSpec, Suite, check_commands, check_up_to_date, plan,
                                    suite_dir)
from ssljax.evaluate.figures import value_at

# The learning curve always has InfoNCE (the quickstart), besides the best row of each family.
CURVE_ALWAYS = ("infonce",)


def describe(report: dict) -> str:
  """The line a finished run gets: its pooled probe beside the untrained encoder's."""
  probe = value_at(report, "linear_probes.pooled.top1")
  untrained = value_at(report, "random_init.linear_probes.pooled.top1")
  if probe is None:
    return "no pooled probe in its report"
  return f"pooled probe {probe:.4f}" + (f" (untrained {untrained:.4f})" if untrained else "")


def announce(suite: Suite, runs: list[RunSpec], what: str, root,
             recorded: dict | None = None) -> list[RunSpec]:
  """Prints the plan and its estimated wall time; returns the runs still to do (``recorded``:
  those finished in an earlier sitting, kept from the results JSON, are done)."""
  recorded = recorded or {}
  pending = [r for r in runs if not r.finished() and r.workdir not in recorded]
  resuming = sum(r.started() for r in pending)
  # Every finished run measures the machine, the table's and the curve's alike.
  finished = list({r.workdir: r for r in [*plan(suite, root), *runs] if r.finished()}.values())
  seconds, how = runner.estimate(suite, pending, finished)
  print(f"suite {suite.name}: {what}: {len(runs)} run(s) under {suite_dir(root, suite)}/; "
        f"{len(runs) - len(pending)} finished, {len(pending)} to run"
        + (f" ({resuming} resume from a checkpoint)" if resuming else "")
        + (f"; {len(recorded)} finished in an earlier sitting, kept from the results JSON"
           if recorded else ""))
  if pending:
    print(f"estimated wall time: {runner.duration(seconds)} ({how})", flush=True)
  return pending


def execute(suite: Suite, runs: list[RunSpec], what: str, root, results, readme,
            dry_run: bool) -> runner.Outcome:
  check_up_to_date(runs)  # a changed suite file must not mix old runs into the new table
  recorded = recorded_runs(suite, root, every_run(suite, root), results)  # for the page too
  done_elsewhere = {w: r for w, r in recorded.items() if w in {run.workdir for run in runs}}
  pending = announce(suite, runs, what, root, done_elsewhere)
  check_commands(pending)  # every command parses before the first one starts
  if dry_run:
    for run in pending:
      print(shlex.join(run.command))
    return runner.Outcome(skipped=[r for r in runs if r not in pending])
  outcome = runner.run_plan(
      [r for r in runs if r.workdir not in done_elsewhere],
      lambda run: write_results(suite, root, results, readme, recorded), describe)
  document = write_results(suite, root, results, readme, recorded)
  if document:
    print(f"table: {pathlib.Path(results) / (suite.name + '.md')} ({document['finished_runs']} "
          f"of {document['expected_runs']} runs; also .json and plots)")
  if outcome.failed:
    print(f"{len(outcome.failed)} run(s) failed: {', '.join(r.label for r in outcome.failed)}; "
          "their logs say why, and rerunning retries them")
  return outcome


def run_table(suite: Suite, rows: list[Row], seeds, root, results, readme=None,
              dry_run: bool = False) -> runner.Outcome:
  """Runs every (row, seed) not finished yet at the suite's budget, then aggregates."""
  runs = plan(suite, root, rows, seeds)
  return execute(suite, runs, f"{len(rows)} row(s) x {len(seeds)} seed(s)", root, results,
                 readme, dry_run)


def curve_rows(suite: Suite, root, only: list[Row] | None = None, results=None) -> list[Row]:
  """``only`` if given; else the suite's ``curve.rows``; else InfoNCE and the best finished row of
  each family (families with no finished run yet are left out until they have one), the runs
  recorded in ``results``' JSON included."""
  if only:
    return only
  named = tuple((suite.config.get("curve") or {}).get("rows", ()))
  if not named:
    recorded = recorded_runs(suite, root, every_run(suite, root), results)
    best = best_by_family(build_document(suite, root, recorded))
    named = tuple(dict.fromkeys([*(n for n in CURVE_ALWAYS if n in {r.name for r in suite.rows}),
                                 *best.values()]))
  return [suite.row(name) for name in named]


def run_curve(suite: Suite, root, results, readme=None, only: list[Row] | None = None,
              dry_run: bool = False) -> runner.Outcome:
  """One seed of each curve row at each curve budget (the suite's own budget is the table's run)."""
  curve = suite.config.get("curve") or {}
  epochs = [float(e) for e in curve.get("epochs", ())]
  if not epochs:
    from ssljax.errors import UserError
    raise UserError(f"suite {suite.name} declares no curve.epochs; add curve=dict(epochs=(1, 3, "
                    "10)) to its get_config()")
  rows = curve_rows(suite, root, only, results)
  seed = int(curve.get("seed", suite.seeds[0]))
  runs = [run for e in epochs for run in plan(suite, root, rows, [seed], epochs=e)]
  print(f"learning curve: {', '.join(r.name for r in rows)} at {', '.join(f'{e:g}' for e in epochs)}"
        f" epochs, seed {seed}")
  return execute(suite, runs, "learning curve", root, results, readme, dry_run)


def check(suite: Suite, row: Row, seed: int, root, results=None) -> bool:
  """Reruns (row, seed) into ``<suite>/check/`` and prints whether it reproduces the stored run:
  its report.json, or on a machine without its directory its record in ``results``' JSON."""
  stored = plan(suite, root, [row], [seed])[0]
  scratch = plan(suite, root, [row], [seed], scratch="check")[0]
  check_up_to_date([stored])
  check_commands([scratch])
  record = None if stored.finished() else recorded_runs(suite, root, [stored], results).get(
      stored.workdir)
  reference = report_from_record(record) if record else runner.stored_report(stored)
  seconds = runner.measured_seconds(reference, stored.epochs)
  print(f"check {stored.label}: rerunning into {scratch.workdir}"
        + (f" (about {runner.duration(seconds)})" if seconds else "")
        + (f"; comparing with its record in {results}" if record else ""), flush=True)
  ok, lines = runner.check_run(reference, stored, scratch)
  print("\n".join(lines))
  return ok
