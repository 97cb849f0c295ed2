"""The run's report: ``report.json`` (machine-readable, contract keys), ``report.md`` (a table a person
reads at a glance, the transfer table under it) and ``plots/*.png``; with W&B on, the same table and
plots as ``wandb.Table`` / ``wandb.Image``.

What each figure is, and how it reads, is declared once in ``ssljax.evaluate.figures``; the tables
are ``ssljax.evaluate.tables``, the plots ``ssljax.evaluate.plots``. Many runs side by side:
``ssljax.compare``.
"""
from __future__ import annotations

import json
import pathlib

from ssljax.evaluate.figures import collapse_warning
from ssljax.evaluate.plots import evaluation_plots, plot_pretraining, plot_probes
from ssljax.evaluate.plots import save_image_grid  # noqa: F401  (objectives draw their grids here)
from ssljax.evaluate.tables import figure_rows, report_markdown


def result_lines(report: dict, workdir: pathlib.Path) -> list[str]:
  """What a command prints when it has written a report: the headline probe, where the report is."""
  probe = report.get("linear_probe", {})
  lines = []
  if "top1" in probe:
    lines.append(f"linear probe top-1: {probe['top1']:.4f} ± {probe['top1_ci95']:.4f} "
                 f"({probe['seeds']} seeds, {probe['features']} features)")
  if collapse_warning(report):
    lines.append(collapse_warning(report))
  return lines + [f"report: {pathlib.Path(workdir) / 'report.md'} (and report.json, plots/)"]


def log_report(writer, report: dict, workdir: pathlib.Path) -> None:
  """The report's tables and plots as W&B objects (wandb.Table, wandb.Image), when W&B is on."""
  if getattr(writer, "run", None) is None:
    return
  import wandb
  payload = {"report/figures": wandb.Table(columns=["figure", "value"],
                                           data=[list(r) for r in figure_rows(report)])}
  transfer = report.get("transfer", {})
  if transfer.get("rows"):
    payload["report/transfer"] = wandb.Table(
        columns=["setting", "stages_frozen", "trainable_encoder_params", "top1"],
        data=[[r["row"], r["frozen_stages"], r["trainable_encoder_params"], r["top1"]]
              for r in transfer["rows"]])
  for plot in report.get("plots", []):
    if (pathlib.Path(workdir) / plot).exists():
      payload[f"plots/{pathlib.Path(plot).stem}"] = wandb.Image(str(pathlib.Path(workdir) / plot))
  writer.log_artifacts(payload)


def write_report(workdir: pathlib.Path, report: dict, extra_plots: list[str] = ()) -> dict:
  """Writes report.json, report.md and the plots; ``extra_plots`` are files already in plots/."""
  workdir = pathlib.Path(workdir)
  (workdir / "plots").mkdir(exist_ok=True)
  plots = (plot_pretraining(workdir) + plot_probes(report, workdir)
           + evaluation_plots(report, workdir) + [f"plots/{name}" for name in extra_plots])
  report["plots"] = plots
  (workdir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
  (workdir / "report.md").write_text(report_markdown(report, plots))
  return report
