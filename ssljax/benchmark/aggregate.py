"""From finished run directories to the table's numbers: each run's figures, each row's mean and 95%
CI over pretraining seeds, the controls, the learning curve; one JSON document.

The unit of a row's CI is the pretraining seed: a run's figure is already the mean over its linear
probe's own seeds, so the CI says how much a row moves when pretraining is repeated, which is what
two rows of the table are compared on. Aggregation reads whatever has finished: a row with one
seed says n=1 and shows no CI.

Controls: the untrained encoder is measured inside every run (``random_init`` in its report: the
same probes on the run's own initialisation), so per seed it is the mean over that seed's runs
(the rows share the encoder, so they agree up to the heads each objective adds), and its CI is over
seeds like a row's. Raw pixels need no pretraining: every run measures the same number, shown with
its probe-seed CI.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib

from ssljax.benchmark.runner import read_report
from ssljax.benchmark.suite import RunSpec, Suite, flatten, plan, suite_dir
from ssljax.evaluate.figures import value_at
from ssljax.evaluate.linear_probe import mean_ci95
from ssljax.rundir import PROVENANCE, read_config


@dataclasses.dataclass(frozen=True)
class Column:
  name: str                  # its key in the JSON's figures
  key: str                   # its path in report.json
  header: str                # its column in the Markdown table
  digits: int
  show_ci: bool = False      # "mean ± CI" in the table (the JSON always has the CI)
  control: str | None = None  # the untrained encoder's same figure (path in report.json)


COLUMNS = (
    Column("probe_pooled", "linear_probes.pooled.top1", "linear probe, pooled", 4, True,
           "random_init.linear_probes.pooled.top1"),
    Column("probe_last_stage", "linear_probes.last_stage.top1", "linear probe, last stage", 4,
           True, "random_init.linear_probes.last_stage.top1"),
    Column("knn", "knn.top1", "kNN, pooled", 4, True, "random_init.knn.top1"),
    Column("online_probe", "online_probe.top1", "online probe", 4, True),
    # The EMA teacher's own linear probe (BYOL, MoCo v3, DINO: their reports' teacher_probe).
    Column("teacher_probe", "teacher_probe.top1", "teacher probe", 4, True),
    Column("rankme", "rankme.encoder", "RankMe", 1),
    Column("lidar", "lidar.encoder", "LiDAR", 1),
    Column("align", "align", "align", 3),
    Column("uniform", "uniform", "uniform", 3),
    Column("invariance_flip", "invariance.flip.score", "inv. flip", 3),
    Column("invariance_scale", "invariance.scale.score", "inv. scale", 3),
    # Collapse watch: the std of the normalised projector output over its healthy 1/sqrt(D).
    Column("collapse", "collapse.ratio", "collapse watch", 2),
    Column("images_per_s", "pretrain.images_per_s", "images/s", 0),
)
HEADLINE = "probe_pooled"  # what the bar chart, the curve and the directions compare


def statistics(values) -> dict | None:
  """{'mean', 'ci95' (t-distribution half-width; None below two values), 'n', 'values'}."""
  values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
  if not values:
    return None
  mean, ci = mean_ci95(values)
  return {"mean": mean, "ci95": None if math.isnan(ci) else ci, "n": len(values), "values": values}


def shown_path(path, base=None) -> str:
  """``path`` relative to ``base`` (default: the current directory, the repository root when the
  runner starts there); a path outside it shows its name only: the committed JSON holds no
  machine's paths."""
  path, base = pathlib.Path(path).absolute(), pathlib.Path(base or ".").absolute()
  return str(path.relative_to(base)) if path.is_relative_to(base) else path.name


def _finite(value):
  return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def run_record(run: RunSpec, report: dict, suite_root) -> dict:
  """One finished run: its figures, its controls, its resolved config and the commit it ran at;
  ``dir`` is relative to the suite's run directory (``<root>/<suite>``)."""
  config = read_config(run.workdir, missing_ok=True)
  provenance = config.pop(PROVENANCE, {}) or {}
  pre = report.get("pretrain") or {}
  raw = report.get("raw_pixel_probe") or {}
  return {
      "seed": run.seed, "epochs": run.epochs, "dir": shown_path(run.workdir, suite_root),
      "figures": {c.name: value_at(report, c.key) for c in COLUMNS},
      # The headline's CI over the probe's own seeds: the learning curve's error bar.
      "probe_pooled_ci95": _finite(value_at(report, "linear_probes.pooled.top1_ci95")),
      "random_init": {c.name: value_at(report, c.control) for c in COLUMNS if c.control},
      "raw_pixels": {"top1": raw.get("top1"), "ci95": _finite(raw.get("top1_ci95"))},
      "pretrain_wall_s": pre.get("wall_s"), "eval_wall_s": report.get("eval_wall_s"),
      "params_fingerprint": pre.get("params_fingerprint"),
      "commit": provenance.get("git_commit"), "dirty": provenance.get("git_dirty"),
      "config": config,
  }


def report_from_record(record: dict) -> dict:
  """The report.json a results record was made from, as far as the record keeps it (its columns'
  figures, the params fingerprint, the wall times): what ``--check`` compares a rerun with on a
  machine that has the committed JSON but not the run directory."""
  report: dict = {}
  for c in COLUMNS:
    if record["figures"].get(c.name) is not None:
      *parents, leaf = c.key.split(".")
      node = report
      for part in parents:
        node = node.setdefault(part, {})
      node[leaf] = record["figures"][c.name]
  pretrain = report.setdefault("pretrain", {})
  pretrain.update(params_fingerprint=record.get("params_fingerprint"),
                  wall_s=record.get("pretrain_wall_s"), epochs=record.get("epochs"))
  report["eval_wall_s"] = record.get("eval_wall_s")
  return report


def finished_records(runs: list[RunSpec], suite_root) -> list[tuple[RunSpec, dict]]:
  out = []
  for run in runs:
    report = read_report(run)
    if report is not None:
      out.append((run, run_record(run, report, suite_root)))
  return out


def every_run(suite: Suite, root) -> list[RunSpec]:
  """The table's runs and every run the learning curve could make (each row at each curve budget
  but the suite's own, which is the table's run): what an earlier sitting may have recorded."""
  curve = suite.config.get("curve") or {}
  seed = int(curve.get("seed", suite.seeds[0]))
  extra = [run for e in curve.get("epochs", ()) if float(e) != float(suite.config.epochs)
           for run in plan(suite, root, list(suite.rows), [seed], epochs=float(e))]
  return [*plan(suite, root), *extra]


def recorded_runs(suite: Suite, root, runs: list[RunSpec], results_dir) -> dict[pathlib.Path, dict]:
  """Runs finished in an earlier sitting whose directories are not on this machine (``runs/`` is
  not committed; a fresh clone has only the results JSON): workdir -> the run's record in
  ``results_dir``'s JSON. The table is then filled in over several sittings on different machines
  without rerunning what is done. A record made under another config than the suite gives the run
  now is left out, so the run is made again; a run directory with its report always wins."""
  import json
  from ssljax.benchmark.suite import check_commands, config_conflicts
  path = results_paths(results_dir, suite)["json"] if results_dir else None
  try:
    stored = json.loads(path.read_text()) if path else {}
  except (OSError, ValueError):
    return {}
  records = [(row["name"], record) for row in stored.get("rows", ()) for record in row.get("runs", ())]
  records += [(record["row"], record) for record in (stored.get("curve") or {}).get("runs", ())]
  by_dir = {(name, record["dir"]): record for name, record in records}
  candidates = [(run, by_dir.get((run.row.name, shown_path(run.workdir, suite_dir(root, suite)))))
                for run in runs if not run.finished()]
  candidates = [(run, record) for run, record in candidates if record]
  out = {}
  for (run, record), config in zip(candidates, check_commands([r for r, _ in candidates])):
    conflicts = config_conflicts(record.get("config") or {}, config)
    if conflicts:
      print(f"{run.label}: its record in {shown_path(path)} was made with another config "
            f"({', '.join(conflicts[:3])}); running it again")
    else:
      out[run.workdir] = record
  return out


def row_entry(suite: Suite, name: str, records: list[dict]) -> dict:
  row = suite.row(name)
  return {"name": row.name, "family": row.family, "what": row.what, "experiment": row.experiment,
          "overrides": row.overrides, "n": len(records),
          "seeds_done": [r["seed"] for r in records],
          "figures": {c.name: statistics([r["figures"][c.name] for r in records]) for c in COLUMNS},
          "runs": records}


def controls(records: list[dict]) -> dict:
  """The untrained encoder (per seed: the mean over that seed's runs; CI over seeds) and raw pixels."""
  by_seed: dict[int, list[dict]] = {}
  for r in records:
    by_seed.setdefault(r["seed"], []).append(r["random_init"])
  per_seed = {seed: {c.name: _mean([v.get(c.name) for v in values]) for c in COLUMNS if c.control}
              for seed, values in sorted(by_seed.items())}
  random_init = {"n": len(per_seed), "per_seed": per_seed,
                 "figures": {c.name: statistics([v[c.name] for v in per_seed.values()])
                             for c in COLUMNS if c.control}}
  raw = [r["raw_pixels"] for r in records if r["raw_pixels"]["top1"] is not None]
  raw_pixels = ({"top1": _mean([r["top1"] for r in raw]), "ci95": raw[0]["ci95"],
                 "ci_over": "linear-probe seeds (no pretraining: every run measures the same)",
                 "runs": len(raw)} if raw else None)
  return {"random_init": random_init, "raw_pixels": raw_pixels}


def _mean(values):
  values = [v for v in values if v is not None]
  return sum(values) / len(values) if values else None


def curve_data(suite: Suite, root, recorded: dict[pathlib.Path, dict] | None = None) -> dict | None:
  """The learning curve: the pooled probe of one seed at each curve budget, for every row that has
  a finished run at a budget other than the suite's (its suite-budget run is the curve's point
  there), with the untrained encoder's level. A run's record comes from its directory or, on a
  machine without it, from ``recorded``; ``runs`` keeps the records of the other budgets' runs, so
  the next sitting's ``recorded_runs`` finds them in the committed JSON as it finds the table's."""
  curve = suite.config.get("curve") or {}
  epochs = sorted(float(e) for e in curve.get("epochs", ()))
  seed = int(curve.get("seed", suite.seeds[0]))
  rows, untrained, records = {}, [], []
  for row in suite.rows:
    points = []
    for e in epochs:
      run = plan(suite, root, [row], [seed], epochs=e)[0]
      found = finished_records([run], suite_dir(root, suite))
      record = found[0][1] if found else (recorded or {}).get(run.workdir)
      if record is None or record["figures"].get(HEADLINE) is None:
        continue
      points.append({"epochs": e, "top1": record["figures"][HEADLINE],
                     "ci95": record.get("probe_pooled_ci95"), "dir": record["dir"]})
      untrained.append(record["random_init"].get(HEADLINE))
      if e != float(suite.config.epochs):
        records.append({"row": row.name, **record})
    if any(p["epochs"] != float(suite.config.epochs) for p in points):
      rows[row.name] = points
  if not rows:
    return None
  return {"epochs": epochs, "seed": seed, "figure": "linear_probes.pooled.top1",
          "rows": rows, "random_init": _mean(untrained), "runs": records}


def best_by_family(document: dict) -> dict[str, str]:
  """family -> its row with the highest mean headline figure among finished rows."""
  best: dict[str, tuple[float, str]] = {}
  for row in document["rows"]:
    stats = row["figures"].get(HEADLINE)
    if stats and (row["family"] not in best or stats["mean"] > best[row["family"]][0]):
      best[row["family"]] = (stats["mean"], row["name"])
  return {family: name for family, (_, name) in best.items()}


def build_document(suite: Suite, root, recorded: dict[pathlib.Path, dict] | None = None) -> dict:
  """The whole results document of ``suite`` from the run directories under ``root``, and from
  ``recorded`` (``recorded_runs``) for the runs finished in an earlier sitting elsewhere."""
  from ssljax.benchmark.directions import check_directions
  runs = plan(suite, root)
  from_dirs = {run.workdir: record for run, record in finished_records(runs, suite_dir(root, suite))}
  finished = [(run, from_dirs.get(run.workdir) or (recorded or {}).get(run.workdir)) for run in runs]
  finished = [(run, record) for run, record in finished if record]
  rows = []
  for row in suite.rows:
    records = [record for run, record in finished if run.row.name == row.name]
    rows.append(row_entry(suite, row.name, records))
  all_records = [record for _, record in finished]
  c = suite.config
  document = {
      "suite": suite.name, "title": c.get("title") or suite.name,
      "suite_file": shown_path(suite.path),
      "declares_curve": bool((c.get("curve") or {}).get("epochs")),
      "protocol": {"dataset": c.dataset, "encoder": c.encoder,
                   "encoder_args": dict(c.get("encoder_args") or {}), "epochs": float(c.epochs),
                   "steps": int(c.get("steps", 0) or 0), "seeds": list(suite.seeds),
                   "seed_key": c.get("seed_key", "seed"),
                   "shared_overrides": {k: list(v) if isinstance(v, tuple) else v
                                        for k, v in flatten(c.get("protocol")).items()},
                   "budget_note": c.get("budget_note", ""),
                   "protocol_note": c.get("protocol_note", ""),
                   "ci": "mean ± 95% CI over pretraining seeds (Student's t, n-1 degrees of "
                         "freedom); each run's figure is the mean over its linear probe's seeds"},
      "expected_runs": len(runs), "finished_runs": len(finished),
      "commits": sorted({r["commit"] for r in all_records if r["commit"]}),
      "columns": [dataclasses.asdict(col) for col in COLUMNS],
      "rows": rows, "controls": controls(all_records),
  }
  document["directions"] = check_directions(rows)
  document["curve"] = curve_data(suite, root, recorded)
  return document


def results_paths(results_dir, suite: Suite) -> dict[str, pathlib.Path]:
  out = pathlib.Path(results_dir)
  return {"json": out / f"{suite.name}.json", "md": out / f"{suite.name}.md",
          "bars": out / f"{suite.name}.png", "curve": out / f"{suite.name}_curve.png"}
