"""Many runs side by side: one table and one set of plots, Markdown + JSON, sorted by probe top-1.

    python -m ssljax.compare DIR [DIR ...] [--out=OUT] [--wandb=auto]

A sweep, a set of objectives, a seed study: each DIR is a run directory with its ``report.json``;
the comparison goes to ``OUT/comparison.{md,json}`` and ``OUT/plots/comparison_*.png`` (OUT defaults
to the runs' common parent, e.g. ``runs/sweeps/NAME``). The table shows, besides the figures (the
ones declared with a column in ``ssljax.evaluate.figures``), the config keys that differ between the
runs, so a sweep's table says what each row changed. With ``--wandb`` other than ``disabled``, the
same table and plots are logged to a W&B run. (One run's own report is ``ssljax.evaluate.report``.)
"""
from __future__ import annotations

import json
import os
import pathlib

from absl import flags

from ssljax.errors import UserError, run_app
from ssljax.evaluate import tables
from ssljax.evaluate.figures import format_value
from ssljax.rundir import read_config

IGNORED_CONFIG = ("wandb.", "log_every", "checkpoint_every", "keep_checkpoints", "cpu_devices",
                  "provenance.")  # provenance: where a run ran (its command differs per run)


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, list) else v
  return out


def load_runs(dirs) -> list[dict]:
  """[{'name', 'dir', 'report', 'config'}] for each run directory, named by its path below the
  runs' common parent."""
  dirs = [pathlib.Path(d) for d in dirs]
  missing = [str(d) for d in dirs if not (d / "report.json").is_file()]
  if missing:
    raise UserError(f"no report.json in {', '.join(missing)}; finish the run(s) or re-create the "
                    "report with `python -m ssljax.evaluate --workdir=DIR`")
  common = pathlib.Path(os.path.commonpath([d.resolve() for d in dirs]))
  runs = []
  for d in dirs:
    name = str(d.resolve().relative_to(common)) if d.resolve() != common else d.resolve().name
    runs.append({"name": name if name != "." else d.resolve().name, "dir": str(d),
                 "report": json.loads((d / "report.json").read_text()),
                 "config": read_config(d, missing_ok=True)})
  return runs


def differing_config(runs: list[dict]) -> list[dict]:
  """Per run, the config keys whose values are not the same in every run."""
  flat = [_flatten(r["config"]) for r in runs]
  keys = sorted(set().union(*flat))
  varying = [k for k in keys if not k.startswith(IGNORED_CONFIG)
             and len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1]
  return [{k: f.get(k) for k in varying} for f in flat]


def comparison_rows(runs: list[dict]) -> tuple[list[dict], list]:
  """(one row per run, best linear probe first; the table's columns)."""
  figures = tables.comparison_figures([run["report"] for run in runs])
  rows = sorted((tables.comparison_row(run, differs, figures)
                 for run, differs in zip(runs, differing_config(runs))), key=tables.sort_key)
  return rows, tables.comparison_columns(figures)


def write_comparison(dirs, out=None) -> dict:
  """Writes OUT/comparison.md, OUT/comparison.json and OUT/plots/comparison_*.png; returns the
  JSON document (``runs`` sorted by probe top-1, best first)."""
  from ssljax.evaluate.plots import (plot_align_uniform, plot_comparison_probe, plot_invariance,
                                     plot_transfer)
  runs = load_runs(dirs)
  rows, columns = comparison_rows(runs)
  if out is None:
    common = pathlib.Path(os.path.commonpath([pathlib.Path(d).resolve() for d in dirs]))
    out = common.parent if len(runs) == 1 else common
  out = pathlib.Path(out)
  (out / "plots").mkdir(parents=True, exist_ok=True)
  by_name = {run["name"]: run["report"] for run in runs}
  ordered = {r["run"]: by_name[r["run"]] for r in rows}
  plots = []
  for name, made in (
      ("comparison_probe.png", lambda p: plot_comparison_probe(rows, p)),
      ("comparison_align_uniform.png", lambda p: plot_align_uniform(ordered, p)),
      ("comparison_invariance.png",
       lambda p: plot_invariance({k: v.get("invariance") for k, v in ordered.items()}, p)),
      ("comparison_transfer.png",
       lambda p: plot_transfer({k: v.get("transfer") for k, v in ordered.items()}, p))):
    if made(out / "plots" / name):
      plots.append(f"plots/{name}")
  document = {"sorted_by": "linear_probe.top1", "runs": rows, "plots": plots,
              # The table as shown (comparison.md, W&B): its headers and each run's cells.
              "columns": [header for header, _ in columns],
              "table": [[cell(row) for _, cell in columns] for row in rows]}
  (out / "comparison.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
  (out / "comparison.md").write_text(tables.comparison_markdown(rows, columns, plots))
  document["out"] = str(out)
  return document


def log_comparison(document: dict, mode: str) -> None:
  """The comparison table and plots as a W&B run of their own (``wandb.Table``, ``wandb.Image``)."""
  from ssljax.tracking import MetricsWriter
  out = pathlib.Path(document["out"])
  writer = MetricsWriter(out, {"runs": [r["dir"] for r in document["runs"]]},
                         {"mode": mode, "project": "ssljax", "name": f"comparison-{out.name}",
                          "tags": ("comparison",)})
  try:
    if writer.run is not None:
      import wandb
      table = wandb.Table(columns=document["columns"], data=document["table"])
      writer.log_artifacts({"comparison/table": table, **{
          f"comparison/{pathlib.Path(p).stem}": wandb.Image(str(out / p)) for p in document["plots"]}})
  finally:
    writer.close()


def main(argv):
  dirs = argv[1:]
  if not dirs:
    raise UserError("give at least one run directory: python -m ssljax.compare DIR [DIR ...]")
  document = write_comparison(dirs, flags.FLAGS.out)
  if flags.FLAGS.wandb != "disabled":
    log_comparison(document, flags.FLAGS.wandb)
  out = pathlib.Path(document["out"])
  best = document["runs"][0]
  print(f"best by probe top-1: {best['run']} ({format_value(best['probe_top1'])})")
  print(f"comparison: {out / 'comparison.md'} (and comparison.json, plots/)")


def define_flags() -> None:
  """Command-line flags, defined only when this is the program (the module is also a library)."""
  flags.DEFINE_string("out", None, "Where comparison.md/.json and plots/ go; default: the runs' "
                      "common parent directory.")
  flags.DEFINE_string("wandb", "disabled", "W&B mode for logging the comparison: disabled | auto | "
                      "online | offline.")
  flags.DEFINE_bool("debug", False, "Show full tracebacks instead of one-line errors.")


def entry_point():
  """Runs ``main``; a UserError becomes one line on stderr and exit code 2."""
  define_flags()
  run_app(main)


if __name__ == "__main__":
  entry_point()
