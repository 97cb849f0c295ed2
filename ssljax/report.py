"""Many runs side by side: one table and one set of plots, Markdown + JSON, sorted by probe top-1.

    python -m ssljax.report DIR [DIR ...] [--out=OUT] [--wandb=auto]

A sweep, a set of objectives, a seed study: each DIR is a run directory with its ``report.json``;
the comparison goes to ``OUT/comparison.{md,json}`` and ``OUT/plots/comparison_*.png`` (OUT defaults
to the runs' common parent, e.g. ``runs/sweeps/NAME``). The table shows, besides the figures, the
config keys that differ between the runs, so a sweep's table says what each row changed. With
``--wandb`` other than ``disabled``, the same table and plots are logged to a W&B run.
(One run's own report is ``ssljax.evaluate.report``.)
"""
from __future__ import annotations

import json
import math
import os
import pathlib

from absl import flags

from ssljax.errors import UserError, run_app

IGNORED_CONFIG = ("wandb.", "log_every", "checkpoint_every", "keep_checkpoints", "cpu_devices",
                  "provenance.")  # provenance: where a run ran (its command differs per run)


def _get(d: dict, path: str):
  for part in path.split("."):
    if not isinstance(d, dict) or part not in d:
      return None
    d = d[part]
  return d


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
    config_path = d / "config.json"
    runs.append({"name": name if name != "." else d.resolve().name, "dir": str(d),
                 "report": json.loads((d / "report.json").read_text()),
                 "config": json.loads(config_path.read_text()) if config_path.is_file() else {}})
  return runs


def differing_config(runs: list[dict]) -> list[dict]:
  """Per run, the config keys whose values are not the same in every run."""
  flat = [_flatten(r["config"]) for r in runs]
  keys = sorted(set().union(*flat))
  varying = [k for k in keys if not k.startswith(IGNORED_CONFIG)
             and len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1]
  return [{k: f.get(k) for k in varying} for f in flat]


def row_of(run: dict, differs: dict) -> dict:
  r = run["report"]
  transfer = {row["row"]: row["top1"] for row in _get(r, "transfer.rows") or []}
  return {
      "run": run["name"], "dir": run["dir"], "objective": r.get("objective"),
      "encoder": r.get("encoder"), "dataset": r.get("dataset"),
      "steps": _get(r, "pretrain.steps"), "pretrain_wall_s": _get(r, "pretrain.wall_s"),
      "probe_top1": _get(r, "linear_probe.top1"), "probe_top1_ci95": _get(r, "linear_probe.top1_ci95"),
      "probe_seeds": _get(r, "linear_probe.seeds"), "probe_top5": _get(r, "linear_probe.top5"),
      "raw_pixel_top1": _get(r, "raw_pixel_probe.top1"), "knn_top1": _get(r, "knn.top1"),
      "online_top1": _get(r, "online_probe.top1"),
      "offline_minus_online": _get(r, "online_probe.offline_minus_online"),
      "align": r.get("align"), "uniform": r.get("uniform"),
      "projector_align": _get(r, "projector.align"), "projector_uniform": _get(r, "projector.uniform"),
      "invariance_flip": _get(r, "invariance.flip.score"),
      "invariance_scale": _get(r, "invariance.scale.score"),
      "transfer_linear": transfer.get("linear probe"), "transfer_full": transfer.get("full fine-tune"),
      "transfer_scratch": transfer.get("from scratch"),
      "differs": differs,
  }


def _sort_key(row: dict):
  top1 = row["probe_top1"]
  return (top1 is None or (isinstance(top1, float) and math.isnan(top1)), -(top1 or 0.0))


def comparison_rows(runs: list[dict]) -> list[dict]:
  return sorted((row_of(run, d) for run, d in zip(runs, differing_config(runs))), key=_sort_key)


def _f(value, digits=4) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "–"
  return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


COLUMNS = [  # (header, cell)
    ("run", lambda r: r["run"]),
    ("objective · encoder", lambda r: f"{r['objective']} · {r['encoder']}"),
    ("differs", lambda r: ", ".join(f"{k}={v}" for k, v in r["differs"].items()) or "–"),
    ("steps", lambda r: _f(r["steps"])),
    ("probe top-1 (95% CI)", lambda r: _f(r["probe_top1"]) + (
        f" ± {_f(r['probe_top1_ci95'])}" if r["probe_top1_ci95"] is not None else "")),
    ("top-5", lambda r: _f(r["probe_top5"])),
    ("kNN", lambda r: _f(r["knn_top1"])),
    ("online", lambda r: _f(r["online_top1"])),
    ("off−on", lambda r: _f(r["offline_minus_online"])),
    ("align", lambda r: _f(r["align"], 3)),
    ("uniform", lambda r: _f(r["uniform"], 3)),
    ("inv. flip", lambda r: _f(r["invariance_flip"], 3)),
    ("inv. scale", lambda r: _f(r["invariance_scale"], 3)),
    ("transfer lin / FT / scratch", lambda r: " / ".join(
        _f(r[k], 3) for k in ("transfer_linear", "transfer_full", "transfer_scratch"))),
    ("wall s", lambda r: _f(r["pretrain_wall_s"], 0)),
]


def markdown(rows: list[dict], plots: list[str]) -> str:
  lines = [f"# Comparison of {len(rows)} runs (sorted by linear-probe top-1)", "",
           "| " + " | ".join(h for h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
  lines += ["| " + " | ".join(cell(r) for _, cell in COLUMNS) + " |" for r in rows]
  raw = {r["raw_pixel_top1"] for r in rows if r["raw_pixel_top1"] is not None}
  if raw:
    lines += ["", "Raw-pixel linear probe under the same protocol: "
              + ", ".join(_f(v) for v in sorted(raw)) + "."]
  lines += ["", *[f"![{p}]({p})" for p in plots], ""]
  return "\n".join(lines)


def plot_probe(rows: list[dict], path: pathlib.Path) -> bool:
  from ssljax.evaluate.plots import plt, save_figure
  rows = [r for r in rows if r["probe_top1"] is not None]
  if not rows:
    return False
  fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.5))
  ys = list(range(len(rows)))[::-1]  # best on top
  errs = [0 if r["probe_top1_ci95"] is None or math.isnan(r["probe_top1_ci95"])
          else r["probe_top1_ci95"] for r in rows]
  ax.barh(ys, [r["probe_top1"] for r in rows], xerr=errs, capsize=3, color="tab:blue", alpha=0.8,
          label="linear probe (95% CI)")
  knn = [(y, r["knn_top1"]) for y, r in zip(ys, rows) if r["knn_top1"] is not None]
  if knn:
    ax.scatter([v for _, v in knn], [y for y, _ in knn], marker="D", color="tab:orange", zorder=3,
               label="kNN")
  raw = [r["raw_pixel_top1"] for r in rows if r["raw_pixel_top1"] is not None]
  if raw:
    ax.axvline(raw[0], color="gray", ls="--", lw=1, label="raw pixels")
  ax.set_yticks(ys, [r["run"] for r in rows], fontsize=7)
  low = min([r["probe_top1"] for r in rows] + [v for _, v in knn] + raw)
  ax.set_xlim(max(0.0, low - 0.05), 1.0), ax.set_xlabel("test top-1")
  ax.set_title("linear probe top-1 by run"), ax.legend(fontsize=7, loc="lower right")
  ax.grid(alpha=0.3, axis="x")
  save_figure(fig, path)
  return True


def write_comparison(dirs, out=None) -> dict:
  """Writes OUT/comparison.md, OUT/comparison.json and OUT/plots/comparison_*.png; returns the
  JSON document (``runs`` sorted by probe top-1, best first)."""
  from ssljax.evaluate.plots import plot_align_uniform, plot_invariance, plot_transfer
  runs = load_runs(dirs)
  rows = comparison_rows(runs)
  if out is None:
    common = pathlib.Path(os.path.commonpath([pathlib.Path(d).resolve() for d in dirs]))
    out = common.parent if len(runs) == 1 else common
  out = pathlib.Path(out)
  (out / "plots").mkdir(parents=True, exist_ok=True)
  by_name = {run["name"]: run["report"] for run in runs}
  ordered = {r["run"]: by_name[r["run"]] for r in rows}
  plots = []
  for name, made in (
      ("comparison_probe.png", lambda p: plot_probe(rows, p)),
      ("comparison_align_uniform.png", lambda p: plot_align_uniform(ordered, p)),
      ("comparison_invariance.png",
       lambda p: plot_invariance({k: v.get("invariance") for k, v in ordered.items()}, p)),
      ("comparison_transfer.png",
       lambda p: plot_transfer({k: v.get("transfer") for k, v in ordered.items()}, p))):
    if made(out / "plots" / name):
      plots.append(f"plots/{name}")
  document = {"sorted_by": "linear_probe.top1", "runs": rows, "plots": plots}
  (out / "comparison.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
  (out / "comparison.md").write_text(markdown(rows, plots))
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
      table = wandb.Table(columns=[h for h, _ in COLUMNS],
                          data=[[cell(r) for _, cell in COLUMNS] for r in document["runs"]])
      writer.log_artifacts({"comparison/table": table, **{
          f"comparison/{pathlib.Path(p).stem}": wandb.Image(str(out / p)) for p in document["plots"]}})
  finally:
    writer.close()


def main(argv):
  dirs = argv[1:]
  if not dirs:
    raise UserError("give at least one run directory: python -m ssljax.report DIR [DIR ...]")
  document = write_comparison(dirs, flags.FLAGS.out)
  if flags.FLAGS.wandb != "disabled":
    log_comparison(document, flags.FLAGS.wandb)
  out = pathlib.Path(document["out"])
  best = document["runs"][0]
  print(f"best by probe top-1: {best['run']} ({_f(best['probe_top1'])})")
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
