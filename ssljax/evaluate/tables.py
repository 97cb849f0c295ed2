"""The report's tables, built from the figure declarations (``ssljax.evaluate.figures``): a run's
``report.md`` (headline, figure table, transfer table) and the many-run comparison table.
"""
from __future__ import annotations

import math

from ssljax.evaluate.figures import (Figure, cell, collapse_warning, concrete, format_value,
                                     is_shown, render, value_at, versus_untrained)

# The comparison's columns besides the figures: what each run is and what it changed.
RUN_COLUMNS = (
    ("run", lambda r: r["run"]),
    ("objective · encoder", lambda r: f"{r['objective']} · {r['encoder']}"),
    ("differs", lambda r: ", ".join(f"{k}={v}" for k, v in r["differs"].items()) or "–"),
)


def headline(report: dict) -> str | None:
  """The first line of report.md: the headline probe and kNN against the untrained encoder."""
  probe, knn = report.get("linear_probe", {}), report.get("knn", {})
  if "top1" not in probe:
    return None
  by_name = {f.name: f for f in concrete(report)}
  line = f"**linear probe ({probe['features']}): {format_value(probe['top1'])}"
  line += versus_untrained(by_name["probe_top1"], report)
  if "top1" in knn:
    line += (f"; kNN ({knn['features']}): {format_value(knn['top1'])}"
             + versus_untrained(by_name["knn_top1"], report))
  return line + "**"


def figure_rows(report: dict) -> list[tuple[str, str]]:
  """(figure, value) rows of the report's main table; also the W&B table."""
  return [(render(f.label, report), cell(f, report)) for f in concrete(report) if is_shown(f, report)]


def transfer_table(transfer: dict) -> list[str]:
  """Markdown lines of the freeze-vs-fine-tune table."""
  lines = [f"## Transfer to {transfer['dataset']}: freeze vs fine-tune", "",
           f"{transfer['train_size']} train / {transfer['test_size']} test images resized to "
           f"{'x'.join(map(str, transfer['image_shape']))}; {transfer['epochs']} epochs, head lr "
           f"{transfer['lr_head']}, unfrozen encoder lr {transfer['lr_encoder']:g}, "
           f"{transfer['features']} features; BatchNorm in inference mode.", "",
           "| setting | stages frozen | trainable encoder params | test top-1 |", "|---|---|---|---|"]
  for r in transfer["rows"]:
    k = "–" if r["frozen_stages"] is None else r["frozen_stages"]
    lines.append(f"| {r['row']} | {k} | {r['trainable_encoder_params']:,} | "
                 f"{format_value(r['top1'])} |")
  stages = "; ".join(f"{s}: {', '.join(p) or '(no parameters)'}"
                     for s, p in transfer["stages"].items())
  return lines + ["", f"Stages and their parameters: {stages}.", ""]


def report_markdown(report: dict, plots: list[str]) -> str:
  lines = [f"# {report['objective']} · {report['encoder']} · {report['dataset']}", ""]
  if headline(report):
    lines += [headline(report), ""]
  if collapse_warning(report):
    lines += [f"**{collapse_warning(report)}**", ""]
  lines += ["| figure | value |", "|---|---|"]
  lines += [f"| {name} | {value} |" for name, value in figure_rows(report)]
  lines.append("")
  if report.get("transfer", {}).get("rows"):
    lines += transfer_table(report["transfer"])
  lines += [*[f"![{p}]({p})" for p in plots], ""]
  return "\n".join(lines)


def comparison_figures(reports: list[dict]) -> list[Figure]:
  """Every figure any of ``reports`` has (families such as ``invariance.*`` over all runs' names)."""
  merged: dict[str, Figure] = {}
  for report in reports:
    for figure in concrete(report):
      merged.setdefault(figure.name, figure)
  # A column no run has a value for (no run did transfer, say) would only be dashes.
  return [f for f in merged.values() if any(value_at(r, f.key) is not None for r in reports)]


def comparison_row(run: dict, differs: dict, figures: list[Figure]) -> dict:
  """One run of the comparison: what it is, what it changed, and each figure's value (its CI as
  ``<name>_ci95``)."""
  report = run["report"]
  row = {"run": run["name"], "dir": run["dir"], "objective": report.get("objective"),
         "encoder": report.get("encoder"), "dataset": report.get("dataset")}
  for figure in figures:
    row[figure.name] = value_at(report, figure.key)
    if figure.ci:
      row[f"{figure.name}_ci95"] = value_at(report, figure.ci)
  return {**row, "differs": differs, "cells": {f.name: cell(f, report, with_control=False)
                                               for f in figures if f.column}}


def sort_key(row: dict):
  """Best linear-probe top-1 first; runs without one last."""
  top1 = row.get("probe_top1")
  return (top1 is None or (isinstance(top1, float) and math.isnan(top1)), -(top1 or 0.0))


def comparison_columns(figures: list[Figure]) -> list[tuple[str, object]]:
  """(header, row -> cell) of the comparison table: the run columns, then each figure's."""
  return [*RUN_COLUMNS, *((f.column, lambda r, name=f.name: r["cells"].get(name, "–"))
                          for f in figures if f.column)]


def comparison_markdown(rows: list[dict], columns, plots: list[str]) -> str:
  lines = [f"# Comparison of {len(rows)} runs (sorted by linear-probe top-1)", "",
           "| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(cell_of(r) for _, cell_of in columns) + " |" for r in rows]
  raw = {r["raw_pixel_top1"] for r in rows if r.get("raw_pixel_top1") is not None}
  if raw:
    lines += ["", "Raw-pixel linear probe under the same protocol: "
              + ", ".join(format_value(v) for v in sorted(raw)) + "."]
  lines += ["", *[f"![{p}]({p})" for p in plots], ""]
  return "\n".join(lines)
