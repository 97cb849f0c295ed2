"""The results page: ``experiments/results/<suite>.md`` (protocol, the table with its controls, the
plots, the learning curve, the literature's directions checked, how to reproduce), the JSON and
plots beside it, and the same page between the README's markers.

The README's section is the page itself (headings one level down, links made relative to the
README), written between ``<!-- results:<suite> begin -->`` and ``<!-- results:<suite> end -->``;
a README without the markers is left alone. Nothing is written before the first run has finished:
until then the README's section says how to run the suite.
"""
from __future__ import annotations

import json
import os
import pathlib
import re

from ssljax.benchmark.aggregate import (COLUMNS, build_document, every_run, recorded_runs,
                                        results_paths)
from ssljax.benchmark.directions import describe_side
from ssljax.benchmark.plots import plot_curve, plot_probe_bars
from ssljax.benchmark.suite import Suite


def cell(stats: dict | None, column) -> str:
  if not stats:
    return "–"
  text = f"{stats['mean']:.{column.digits}f}"
  if column.show_ci and stats["ci95"] is not None:
    text += f" ± {stats['ci95']:.{column.digits}f}"
  return text


def protocol_paragraph(document: dict) -> str:
  p = document["protocol"]
  supervised = [r["name"] for r in document["rows"] if r["family"] == "supervised"]
  encoder = p["encoder"] + "".join(f", {k}={'-'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                                   for k, v in p["encoder_args"].items())
  budget = (f"{p['steps']} steps" if p["steps"] else
            f"{p['epochs']:g} epoch{'s' if p['epochs'] != 1 else ''}")
  shared = ", ".join(f"`{k}={v}`" for k, v in p["shared_overrides"].items())
  note = f" {p['budget_note']}" if p["budget_note"] else ""
  return (f"**Protocol.** One encoder for every row (`{encoder}`), the same data "
          f"(`{p['dataset']}`) and the same pretraining budget: **{budget} per run**.{note} "
          f"{len(p['seeds'])} pretraining seed{'s' if len(p['seeds']) != 1 else ''} per row "
          f"(`config.{p['seed_key']}`: initialisation "
          f"and data order: {', '.join(map(str, p['seeds']))}). Each objective keeps its experiment "
          f"config's views and optimizer; shared by every row: {shared}."
          + (f" {p['protocol_note']}" if p.get("protocol_note") else "") + " Figures are the "
          f"{p['ci']}; n is the number of pretraining seeds finished. Controls in the same table: "
          "the untrained encoder (each run's `random_init`: the same probes on that run's own "
          "initialisation) and raw pixels (the same linear probe on pixels)"
          + (", besides the supervised row(s) " + ", ".join(f"`{n}`" for n in supervised)
             if supervised else "") + ". kNN, RankMe, LiDAR, align/uniform (lower is better for both) "
          "and the invariance scores ((cos pair − cos random) / (1 − cos random)) are on the "
          "encoder's pooled output.")


def table_lines(document: dict) -> list[str]:
  header = ["row", "family", "n", *(c.header for c in COLUMNS)]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in document["rows"]:
    lines.append("| " + " | ".join([f"`{row['name']}`", row["family"].replace("_", " "),
                                    str(row["n"]), *(cell(row["figures"][c.name], c)
                                                     for c in COLUMNS)]) + " |")
  untrained = document["controls"]["random_init"]
  lines.append("| " + " | ".join(["untrained encoder", "control", str(untrained["n"]),
                                  *(cell(untrained["figures"].get(c.name), c) for c in COLUMNS)])
               + " |")
  raw = document["controls"]["raw_pixels"]
  if raw:
    ci = f" ± {raw['ci95']:.4f}" if raw["ci95"] is not None else ""
    lines.append("| " + " | ".join(["raw pixels", "control", "–", f"{raw['top1']:.4f}{ci}",
                                    *("–" * (len(COLUMNS) - 1))]) + " |")
  return lines


def curve_lines(curve: dict | None, image: str | None) -> list[str]:
  if not curve:
    return []
  lines = ["## Learning curve", "",
           f"Linear probe top-1 on pooled features against the pretraining budget, seed "
           f"{curve['seed']} (InfoNCE and the best row of each family, unless the suite names the "
           "rows); every point is a run of its own at that budget (its schedule annealed over "
           "it); the plot's bars are the CI over the probe's seeds"
           + ("; a point without one is a run recorded before that CI was kept. "
              if any(p["ci95"] is None for points in curve["rows"].values() for p in points)
              else ". ")
           + (f"The untrained encoder: {curve['random_init']:.4f}." if curve["random_init"] else ""),
           "", "| row | " + " | ".join(f"{e:g} ep" for e in curve["epochs"]) + " |",
           "|---|" + "---|" * len(curve["epochs"])]
  for name, points in curve["rows"].items():
    at = {p["epochs"]: p["top1"] for p in points}
    lines.append(f"| `{name}` | " + " | ".join(f"{at[e]:.4f}" if e in at else "–"
                                                for e in curve["epochs"]) + " |")
  return lines + ([""] + [f"![learning curve]({image})"] if image else []) + [""]


def directions_lines(directions: list[dict]) -> list[str]:
  lines = ["## The literature's directions, checked", "",
           "Computed from the table (pooled linear probe; a side with several rows is its best "
           "row): *agrees* / *disagrees* when the 95% CIs are apart in the claimed / the opposite "
           "order (for ≈: when they overlap / are apart), *cannot tell* when they overlap or a "
           "side has fewer than two seeds, *not yet run* when a side has no finished run. The "
           "sources trained far longer on other data: only the direction is checked.", "",
           "| direction | source | here | verdict |", "|---|---|---|---|"]
  for d in directions:
    here = f"{describe_side(d['left'])} vs {describe_side(d['right'])}"
    lines.append(f"| {d['claim']} | {d['source']} | {here} | **{d['verdict']}** |")
  return lines + [""]


def row_description(row: dict) -> str:
  """'`name` what it is (`its own overrides`)'."""
  own = ", ".join(f"`{k}={v}`" for k, v in row["overrides"].items())
  return f"`{row['name']}` {row['what']}" + (f" ({own})" if own else "")


def page_body(document: dict, link_prefix: str = "") -> list[str]:
  """The page below its title; ``link_prefix`` points image links at the results directory."""
  rows = document["rows"]
  missing = [r["name"] for r in rows if r["n"] == 0]
  plots = {pathlib.Path(p).stem: link_prefix + p for p in document.get("plots", [])}
  bars = plots.get(document["suite"])
  lines = [protocol_paragraph(document), "",
           f"{document['finished_runs']} of {document['expected_runs']} runs finished"
           + (f"; not yet run: {', '.join(f'`{m}`' for m in missing)}" if missing else "") + ".",
           "", *table_lines(document), "",
           "Rows: " + "; ".join(row_description(r) for r in rows) + ".", ""]
  if bars:
    lines += [f"![linear probe, pooled, by row]({bars})", ""]
  lines += curve_lines(document["curve"], plots.get(f"{document['suite']}_curve"))
  lines += directions_lines(document["directions"])
  commits = ", ".join(c[:10] for c in document["commits"]) or "unknown"
  command = f"python -m ssljax.benchmark --suite={document['suite_file']}"
  lines += ["## Reproduce", "", "```bash",
            f"{command}            # runs what is missing, skips what is finished",
            f"{command} --dry_run  # the plan, the estimate and the commands; runs nothing",
            *([f"{command} --curve    # the learning curve"] if document.get("declares_curve")
              else []),
            f"{command} --check=ROW:SEED   # reruns one run and compares", "```", "",
            f"Runs made at commit(s) {commits}; every run's figures, resolved config and commit are "
            f"in `{document['suite']}.json`.", ""]
  return lines


def page_markdown(document: dict) -> str:
  return "\n".join([f"# {document['title']}", "", *page_body(document)])


def markers(suite_name: str) -> tuple[str, str]:
  return f"<!-- results:{suite_name} begin -->", f"<!-- results:{suite_name} end -->"


def update_readme(readme: pathlib.Path, document: dict, results_dir: pathlib.Path) -> bool:
  """Writes the page between the README's markers; False (nothing written) without them."""
  readme = pathlib.Path(readme)
  if not readme.is_file():
    return False
  text = readme.read_text()
  begin, end = markers(document["suite"])
  if begin not in text or end not in text:
    return False
  prefix = os.path.relpath(pathlib.Path(results_dir), readme.parent) + "/"
  body = [re.sub(r"^(#+) ", r"#\1 ", line) for line in page_body(document, prefix)]
  body = [line.replace(f"in `{document['suite']}.json`", f"in `{prefix}{document['suite']}.json`")
          for line in body]
  section = "\n".join([begin, f"**{document['title']}** (generated from `{prefix}"
                              f"{document['suite']}.md` by `python -m ssljax.benchmark`)", "",
                       *body, end])
  head, rest = text.split(begin, 1)
  readme.write_text(head + section + rest.split(end, 1)[1])
  return True


def write_results(suite: Suite, root, results_dir, readme=None,
                  recorded: dict | None = None) -> dict | None:
  """Aggregates the finished runs into ``results_dir`` (JSON, Markdown, plots) and the README's
  section; returns the document, or None while no run has finished (nothing is written).
  ``recorded``: the runs of earlier sittings kept from the JSON (default: read it now)."""
  if recorded is None:
    recorded = recorded_runs(suite, root, every_run(suite, root), results_dir)
  document = build_document(suite, root, recorded)
  if not document["finished_runs"]:
    return None
  paths = results_paths(results_dir, suite)
  paths["json"].parent.mkdir(parents=True, exist_ok=True)
  document["plots"] = []
  if plot_probe_bars(document, paths["bars"]):
    document["plots"].append(paths["bars"].name)
  if plot_curve(document["curve"], paths["curve"]):
    document["plots"].append(paths["curve"].name)
  paths["json"].write_text(json.dumps(document, indent=2, default=str) + "\n")
  paths["md"].write_text(page_markdown(document))
  if readme:
    update_readme(pathlib.Path(readme), document, pathlib.Path(results_dir))
  return document
