"""Every figure a report shows, declared once: where it sits in ``report.json``, its label, its format.

``FIGURES`` feeds the three places a figure appears, so they cannot drift apart: a run's
``report.md`` table (and the same table in W&B, ``report/figures``), the many-run comparison
(``ssljax.compare``: a column per figure that declares one, a key per figure in
``comparison.json``) and the W&B run summary a sweep optimises (``probe/top1`` ...).

A declaration's ``key`` is a dotted path into report.json (``linear_probe.top1``; ``rows[from
scratch]`` picks the list entry whose ``row`` is "from scratch"). ``{name}`` in a declaration with
``each`` stands for every entry of that section (``invariance.{name}.score`` for flip, scale, ...).
Labels and details may quote other report values: ``{knn.k}``, ``{invariance.flip.pair_cos:.3f}``.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable

RAW_PIXEL_REFERENCE = {"fashion_mnist": 0.842}  # published logistic regression on raw pixels


@dataclasses.dataclass(frozen=True)
class Figure:
  name: str                 # its key in comparison.json rows ("probe_top1")
  key: str                  # its path in report.json ("linear_probe.top1")
  label: str                # its row in report.md; may quote report values ("{knn.k}")
  digits: int | None = 4    # decimals shown; None: the value as it is (counts, text)
  ci: str | None = None     # path of its 95% CI half-width: shown as "value ± ci"
  control: bool = False     # shown beside the untrained encoder's figure (random_init.<key>)
  detail: str | Callable[[dict], str] = ""  # text after the value (a template, or from the report)
  when: str | None = None   # shown only if this path has a value (default: the key's section)
  each: str | None = None   # a section: one figure per entry, "{name}" the entry's name
  skip: str | None = None   # with ``each``: leave out the entry named by this path's value
  column: str | None = None  # its header in the comparison table (None: not a column)
  wandb: str | None = None   # its name in the W&B run summary (None: not there)


def _eval_breakdown(report: dict) -> str:
  seconds = report.get("eval_seconds") or {}
  return " (" + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()) + ")" if seconds else ""


def _published_raw_pixels(report: dict) -> str:
  ref = RAW_PIXEL_REFERENCE.get(report.get("dataset"))
  return f" (published: {ref})" if ref else ""


def _collapse_verdict(report: dict) -> str:
  ratio = report["collapse"]["ratio"]
  return f" — COLLAPSED ({ratio:.3f}× healthy)" if report["collapse"]["collapsed"] else \
      f" ({ratio:.2f}× healthy)"


def collapse_warning(report: dict) -> str | None:
  """The line that flags a collapsed run (report.md, under the headline; the command's output)."""
  collapse = report.get("collapse") or {}
  if not collapse.get("collapsed"):
    return None
  return (f"warning: collapsed run: the held-out {collapse['features']} embeddings' std is "
          f"{collapse['std']:.2g} against a healthy {collapse['healthy_std']:.3f} (1/sqrt(D)); "
          "they sit on (nearly) one point")


FIGURES: tuple[Figure, ...] = (
    Figure("steps", "pretrain.steps", "pretrain steps / epochs", None,
           detail=" / {pretrain.epochs:.2f}", column="steps / epochs"),
    Figure("pretrain_wall_s", "pretrain.wall_s", "pretrain wall time (s)", 1, column="wall s"),
    Figure("pretrain_images_per_s", "pretrain.images_per_s", "pretrain images/s", 1),
    Figure("eval_wall_s", "eval_wall_s", "evaluation wall time (s)", 1, detail=_eval_breakdown,
           when="eval_wall_s"),
    Figure("devices", "pretrain.devices", "devices", None),
    Figure("final_loss", "pretrain.final_loss", "final loss"),
    Figure("probe_skipped", "linear_probe.skipped", "linear probe", None, when="linear_probe.skipped"),
    Figure("probe_top1", "linear_probe.top1",
           "linear probe top-1 ({linear_probe.features} features, {linear_probe.seeds} seeds, 95% CI)",
           ci="linear_probe.top1_ci95", control=True, when="linear_probe.top1",
           column="probe top-1 (95% CI)", wandb="probe/top1"),
    Figure("probe_top5", "linear_probe.top5", "linear probe top-5", ci="linear_probe.top5_ci95",
           when="linear_probe.top1", column="top-5"),
    Figure("probe_val_top1", "linear_probe.val_top1", "probe validation top-1 (chose lr, wd)",
           detail=" (lr={linear_probe.chosen.lr}, wd={linear_probe.chosen.wd})",
           when="linear_probe.top1"),
    Figure("probe_{name}_top1", "linear_probes.{name}.top1", "linear probe top-1 ({name} features)",
           ci="linear_probes.{name}.top1_ci95", control=True, each="linear_probes",
           skip="linear_probe.features"),
    Figure("teacher_probe_top1", "teacher_probe.top1",
           "teacher (EMA) linear probe top-1 ({teacher_probe.features} features)",
           ci="teacher_probe.top1_ci95", column="teacher top-1", wandb="teacher_probe/top1"),
    Figure("raw_pixel_top1", "raw_pixel_probe.top1", "raw-pixel linear probe top-1 (same protocol)",
           ci="raw_pixel_probe.top1_ci95", detail=_published_raw_pixels),
    Figure("knn_top1", "knn.top1", "kNN top-1 (k={knn.k}, τ={knn.temperature}, {knn.features})",
           control=True, column="kNN", wandb="knn/top1"),
    Figure("knn_val_top1", "knn.val_top1", "kNN validation top-1", when="knn.val_top1"),
    Figure("online_top1", "online_probe.top1", "online probe top-1", column="online",
           wandb="online_probe/top1"),
    Figure("offline_minus_online", "online_probe.offline_minus_online", "offline − online gap",
           column="off−on"),
    Figure("align", "align", "alignment, encoder (lower = views closer)", column="align",
           wandb="align", when=""),
    Figure("uniform", "uniform", "uniformity, encoder (lower = more uniform)", column="uniform",
           wandb="uniform", when=""),
    Figure("projector_align", "projector.align", "alignment, projector"),
    Figure("projector_uniform", "projector.uniform", "uniformity, projector"),
    Figure("rankme_encoder", "rankme.encoder",
           "RankMe, encoder ({rankme.protocol.num_images} images, D={rankme.protocol.dims.encoder})",
           1, column="RankMe", wandb="rankme/encoder"),
    Figure("rankme_projector", "rankme.projector",
           "RankMe, projector (D={rankme.protocol.dims.projector})", 1,
           column="RankMe proj", wandb="rankme/projector"),
    Figure("lidar_encoder", "lidar.encoder",
           "LiDAR, encoder ({lidar.protocol.num_images} images × {lidar.protocol.views} views)", 1,
           column="LiDAR", wandb="lidar/encoder"),
    Figure("collapse_std", "collapse.std",
           "collapse watch: std of L2-normalised {collapse.features} (healthy ≈ 1/√D)",
           detail=_collapse_verdict, column="collapse std", wandb="collapse/std"),
    Figure("invariance_{name}", "invariance.{name}.score",
           "invariance to {name}: score (cos pair vs random)", 3,
           detail=" ({invariance.{name}.pair_cos:.3f} vs {invariance.{name}.random_cos:.3f})",
           each="invariance", column="inv. {name}", wandb="invariance/{name}"),
    Figure("transfer_linear", "transfer.rows[linear probe].top1",
           "transfer to {transfer.dataset}: linear probe", column="transfer lin"),
    Figure("transfer_full", "transfer.rows[full fine-tune].top1",
           "transfer to {transfer.dataset}: full fine-tune", column="transfer FT"),
    Figure("transfer_scratch", "transfer.rows[from scratch].top1",
           "transfer to {transfer.dataset}: from scratch", column="transfer scratch"),
    Figure("transfer_skipped", "transfer.skipped", "transfer", None, when="transfer.skipped"),
)


def value_at(report: dict, path: str):
  """The value at dotted ``path`` of ``report`` (``rows[NAME]``: the list entry whose ``row`` is
  NAME), or None where the path leads nowhere."""
  node = report
  for part in path.split(".") if path else ():
    match = re.fullmatch(r"(\w+)\[(.+)\]", part)
    if match:
      rows = node.get(match.group(1)) if isinstance(node, dict) else None
      node = next((r for r in rows or () if isinstance(r, dict) and r.get("row") == match.group(2)),
                  None)
    elif isinstance(node, dict):
      node = node.get(part)
    else:
      return None
  return node


def format_value(value, digits: int | None = 4) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "–"
  if digits is not None and isinstance(value, float):
    return f"{value:.{digits}f}"
  return str(value)


def render(template: str, report: dict) -> str:
  """``template`` with each ``{path}`` / ``{path:spec}`` replaced by that report value."""
  def one(match):
    value = value_at(report, match.group(1))
    if value is None or not match.group(2):
      return format_value(value, None)
    return format(value, match.group(2))
  return re.sub(r"\{([\w. \-\[\]]+?)(?::([^{}]+))?\}", one, template)


def concrete(report: dict, figures=FIGURES) -> list[Figure]:
  """The figures of ``report``, each ``each`` declaration expanded to one per entry."""
  out = []
  for figure in figures:
    if figure.each is None:
      out.append(figure)
      continue
    section = value_at(report, figure.each)
    skipped = value_at(report, figure.skip) if figure.skip else None
    for name in section if isinstance(section, dict) else ():
      fill = lambda text: text.replace("{name}", name) if isinstance(text, str) else text
      if name != skipped and value_at(report, fill(figure.key)) is not None:  # e.g. no "protocol"
        out.append(dataclasses.replace(figure, **{
            field: fill(getattr(figure, field)) for field in
            ("name", "key", "label", "ci", "detail", "when", "column", "wandb")}, each=None))
  return out


def is_shown(figure: Figure, report: dict) -> bool:
  """Whether a run's table has this figure's row: its ``when`` path (default: its section) has a
  value; ``when=""`` always."""
  when = figure.key.split(".")[0].split("[")[0] if figure.when is None else figure.when
  return when == "" or value_at(report, when) is not None


def versus_untrained(figure: Figure, report: dict) -> str:
  """' — untrained encoder Y (+Z)' for a figure with a control measured beside it, else ''."""
  value, control = value_at(report, figure.key), value_at(report, f"random_init.{figure.key}")
  if not figure.control or value is None or control is None:
    return ""
  return f" — untrained encoder {format_value(control)} ({value - control:+.4f})"


def cell(figure: Figure, report: dict, with_control: bool = True) -> str:
  """The figure's value as shown: ``value ± ci``, the untrained encoder's beside it, the detail."""
  ci = value_at(report, figure.ci) if figure.ci else None
  text = format_value(value_at(report, figure.key), figure.digits)
  if ci is not None and not (isinstance(ci, float) and math.isnan(ci)):
    text += f" ± {format_value(ci, figure.digits)}"
  if with_control:
    text += versus_untrained(figure, report)
  detail = figure.detail(report) if callable(figure.detail) else render(figure.detail, report)
  return text + detail


def wandb_summary(report: dict) -> dict:
  """The run summary W&B keeps (a sweep's metric is one of these): name -> value, CIs beside."""
  summary = {}
  for figure in concrete(report):
    if figure.wandb:
      summary[figure.wandb] = value_at(report, figure.key)
      if figure.ci:
        summary[f"{figure.wandb}_ci95"] = value_at(report, figure.ci)
  return summary
