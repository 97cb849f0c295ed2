"""Every plot of a report or a comparison: drawn for one run or many, the same function makes a
run's plot (one entry) and the comparison's (one entry per run), so the two read the same way.

- the alignment-uniformity plane (Wang & Isola 2020, Fig. 1): x = uniformity, y = alignment, lower
  left is better; the encoder's point and, where there is one, the projector's;
- the transfer curve: test top-1 on the transfer dataset against the number of frozen stages, from
  full fine-tune (0) to linear probe (all), with from-scratch as a dashed line;
- the invariance probe: cosine of f(x) with f(T(x)) against that of random pairs, per transform;
- a run's pretraining loss and online-probe curves, its probes beside the untrained encoder's, the
  comparison's probe bars, and the image grids objectives draw (reconstructions, GAN samples).

Each plot is a ``matplotlib.figure.Figure`` of its own, rendered straight to a PNG by the Agg
canvas: no pyplot, so no global figure state and no backend choice imposed on whoever imports this.
"""
from __future__ import annotations

import math
import pathlib

import matplotlib
import matplotlib.figure

from ssljax.metric_names import headline_losses
from ssljax.tracking import read_metrics


def new_figure(figsize) -> matplotlib.figure.Figure:
  return matplotlib.figure.Figure(figsize=figsize)


def colors() -> list[str]:
  return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def save_figure(fig, path: pathlib.Path, dpi: int = 120, tight: bool = True) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  # bbox "tight" grows the saved area to hold labels and an outside legend, axes keep their size.
  fig.savefig(path, dpi=dpi, bbox_inches="tight" if tight else None)


def legend(ax, many: bool) -> None:
  """Inside for one run; to the right of the axes for many, where it cannot hide a point."""
  if many:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
  else:
    ax.legend(fontsize=7, loc="best")


def align_uniform_points(report: dict) -> dict[str, tuple[float, float]]:
  """{'encoder': (uniform, align), 'projector': (...)} from one report."""
  points = {}
  if report.get("align") is not None:
    points["encoder"] = (report["uniform"], report["align"])
  if isinstance(report.get("projector"), dict):
    points["projector"] = (report["projector"]["uniform"], report["projector"]["align"])
  return points


def plot_align_uniform(runs: dict[str, dict], path: pathlib.Path, title: str = "") -> bool:
  """``runs``: label -> report. Circles are encoder features, triangles projector outputs."""
  points = {label: align_uniform_points(r) for label, r in runs.items()}
  if not any(points.values()):
    return False
  fig = new_figure((6, 4.2))
  ax = fig.subplots()
  palette = colors()
  for i, (label, pts) in enumerate(points.items()):
    color = palette[i % len(palette)]
    for where, marker in (("encoder", "o"), ("projector", "^")):
      if where in pts:
        x, y = pts[where]
        ax.scatter([x], [y], color=color, marker=marker, s=50,
                   label=f"{label} ({where})" if len(runs) > 1 else where)
        if len(runs) == 1:
          ax.annotate(where, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
  ax.set_xlabel("uniformity  log E exp(-2‖f(x)-f(y)‖²)  (lower = more uniform)")
  ax.set_ylabel("alignment  E ‖f(v1)-f(v2)‖²  (lower = closer views)")
  ax.set_title(title or "alignment-uniformity plane (better: lower left)")
  ax.grid(alpha=0.3)
  legend(ax, len(runs) > 1)
  save_figure(fig, path)
  return True


def plot_transfer(runs: dict[str, dict], path: pathlib.Path, title: str = "") -> bool:
  """``runs``: label -> the report's ``transfer`` section (with ``rows``)."""
  runs = {label: t for label, t in runs.items() if isinstance(t, dict) and t.get("rows")}
  if not runs:
    return False
  fig = new_figure((6.5, 4))
  ax = fig.subplots()
  palette = colors()
  ticks = {}
  for i, (label, t) in enumerate(runs.items()):
    color = palette[i % len(palette)]
    curve = sorted((r["frozen_stages"], r["top1"], r["row"]) for r in t["rows"]
                   if r["frozen_stages"] is not None)
    ax.plot([c[0] for c in curve], [c[1] for c in curve], "o-", color=color,
            label=f"{label}: pretrained" if len(runs) > 1 else "pretrained encoder")
    for k, _, row in curve:
      ticks.setdefault(k, row if row in ("full fine-tune", "linear probe") else str(k))
    scratch = [r["top1"] for r in t["rows"] if r["frozen_stages"] is None]
    if scratch:
      ax.axhline(scratch[0], color=color, ls="--", lw=1,
                 label=f"{label}: from scratch" if len(runs) > 1 else "from scratch")
  ax.set_xticks(sorted(ticks), [f"{k}\n{ticks[k]}" if not ticks[k].isdigit() else str(k)
                                for k in sorted(ticks)], fontsize=8)
  ax.set_xlabel("stages frozen (first k)"), ax.set_ylabel("transfer test top-1")
  # At least 5 points of range: one test image must not look like a cliff.
  values = [r["top1"] for t in runs.values() for r in t["rows"]]
  low, high = min(values), max(values)
  pad = max(0.0, 0.05 - (high - low)) / 2 + 0.005
  ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad) + 0.001)
  first = next(iter(runs.values()))
  ax.set_title(title or f"freeze vs fine-tune on {first['dataset']} ({first['test_size']} test "
               f"images: 1 image = {1 / max(first['test_size'], 1):.4f})", fontsize=10)
  ax.grid(alpha=0.3)
  legend(ax, len(runs) > 1)
  save_figure(fig, path)
  return True


def plot_invariance(runs: dict[str, dict], path: pathlib.Path, title: str = "") -> bool:
  """``runs``: label -> the report's ``invariance`` section. Bars: normalised score per transform."""
  runs = {label: inv for label, inv in runs.items() if isinstance(inv, dict)}
  transforms = sorted({k for inv in runs.values() for k, v in inv.items()
                       if isinstance(v, dict) and "score" in v})
  if not transforms:
    return False
  fig = new_figure((6, 3.6))
  ax = fig.subplots()
  width = 0.8 / max(len(runs), 1)
  for i, (label, inv) in enumerate(runs.items()):
    values = [inv.get(t, {}).get("score", math.nan) for t in transforms]
    xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(transforms))]
    bars = ax.bar(xs, [0 if math.isnan(v) else v for v in values], width, label=label)
    for bar, t in zip(bars, transforms):
      entry = inv.get(t, {})
      ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01,
              f"{entry.get('score', math.nan):.2f}\n({entry.get('pair_cos', math.nan):.2f} vs "
              f"{entry.get('random_cos', math.nan):.2f})", ha="center", va="bottom", fontsize=6)
  ax.set_xticks(range(len(transforms)), transforms)
  ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.15)
  ax.set_ylabel("invariance score\n(pair − random) / (1 − random)")
  ax.set_title(title or "invariance probe: cos(f(x), f(T x)) vs random pairs")
  ax.grid(alpha=0.3, axis="y")
  if len(runs) > 1:
    legend(ax, True)
  save_figure(fig, path)
  return True


def plot_pretraining(workdir: pathlib.Path) -> list[str]:
  """plots/pretrain_loss.png (each player's loss) and, with an online probe, online_probe.png."""
  records = read_metrics(workdir)
  if not records:
    return []
  plots = []
  steps = [r["step"] for r in records]
  loss_keys = list(headline_losses(records[-1]))
  fig = new_figure((6, 3.5))
  ax = fig.subplots()
  for key in loss_keys or ["total_loss"]:
    ax.plot(steps, [r.get(key, math.nan) for r in records], label=key)
  ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.set_title("pretraining loss")
  ax.legend(), ax.grid(alpha=0.3)
  fig.tight_layout(), save_figure(fig, workdir / "plots" / "pretrain_loss.png", tight=False)
  plots.append("plots/pretrain_loss.png")
  if any("online_probe/acc" in r for r in records):
    fig = new_figure((6, 3.5))
    ax = fig.subplots()
    ax.plot(steps, [r.get("online_probe/acc", math.nan) for r in records])
    ax.set_xlabel("step"), ax.set_ylabel("train-batch top-1"), ax.grid(alpha=0.3)
    ax.set_title("online probe accuracy during pretraining")
    fig.tight_layout(), save_figure(fig, workdir / "plots" / "online_probe.png", tight=False)
    plots.append("plots/online_probe.png")
  return plots


def plot_probes(report: dict, workdir: pathlib.Path) -> list[str]:
  """Test top-1 of every probe, the untrained encoder's beside it in grey where it was measured."""
  control = report.get("random_init", {})
  bars = []  # (label, trained section, untrained section or None)
  if isinstance(report.get("raw_pixel_probe"), dict):
    bars.append(("raw pixels", report["raw_pixel_probe"], None))
  for name, probe in report.get("linear_probes", {}).items():
    bars.append((f"linear ({name})", probe, control.get("linear_probes", {}).get(name)))
  if not report.get("linear_probes") and "top1" in report.get("linear_probe", {}):
    bars.append(("linear probe", report["linear_probe"], None))
  for label, key in (("kNN", "knn"), ("online probe", "online_probe")):
    if isinstance(report.get(key), dict) and "top1" in report[key]:
      bars.append((label, report[key], control.get(key)))
  if not bars:
    return []
  fig = new_figure((max(6, 1.3 * len(bars)), 3.5))
  ax = fig.subplots()
  x = list(range(len(bars)))
  width = 0.38
  err = lambda s: 0 if s.get("top1_ci95") is None or math.isnan(s["top1_ci95"]) else s["top1_ci95"]
  values = [b[1]["top1"] for b in bars]
  ax.bar([i - width / 2 for i in x], values, width, yerr=[err(b[1]) for b in bars], capsize=3,
         color="tab:blue", label="pretrained")
  with_control = [(i, b[2]) for i, b in enumerate(bars) if b[2] and "top1" in b[2]]
  if with_control:
    ax.bar([i + width / 2 for i, _ in with_control], [c["top1"] for _, c in with_control], width,
           color="tab:gray", label="untrained encoder")
    values += [c["top1"] for _, c in with_control]
  for i, (_, section, _) in enumerate(bars):
    ax.text(i - width / 2, section["top1"] + 0.004, f"{section['top1']:.3f}", ha="center",
            va="bottom", fontsize=7)
  ax.set_xticks(x, [b[0] for b in bars], fontsize=8)
  ax.set_ylim(max(0.0, min(values) - 0.1), 1.0), ax.set_ylabel("test top-1")
  ax.set_title(f"{report['objective']} / {report['encoder']} on {report['dataset']}")
  ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  fig.tight_layout(), save_figure(fig, workdir / "plots" / "probe_accuracy.png", tight=False)
  return ["plots/probe_accuracy.png"]


def evaluation_plots(report: dict, workdir: pathlib.Path) -> list[str]:
  """A run's alignment-uniformity, invariance and transfer plots (those it has figures for)."""
  label = report["encoder"]
  made = []
  for name, drawn in (
      ("align_uniform", lambda p: plot_align_uniform({label: report}, p)),
      ("invariance", lambda p: plot_invariance({label: report.get("invariance")}, p)),
      ("transfer", lambda p: plot_transfer({label: report.get("transfer")}, p))):
    if drawn(workdir / "plots" / f"{name}.png"):
      made.append(f"plots/{name}.png")
  return made


def plot_comparison_probe(rows: list[dict], path: pathlib.Path) -> bool:
  """The comparison's linear-probe bars (95% CI) per run, best on top, kNN as diamonds."""
  rows = [r for r in rows if r.get("probe_top1") is not None]
  if not rows:
    return False
  fig = new_figure((7, 0.45 * len(rows) + 1.5))
  ax = fig.subplots()
  ys = list(range(len(rows)))[::-1]  # best on top
  errs = [0 if r.get("probe_top1_ci95") is None or math.isnan(r["probe_top1_ci95"])
          else r["probe_top1_ci95"] for r in rows]
  ax.barh(ys, [r["probe_top1"] for r in rows], xerr=errs, capsize=3, color="tab:blue", alpha=0.8,
          label="linear probe (95% CI)")
  knn = [(y, r["knn_top1"]) for y, r in zip(ys, rows) if r.get("knn_top1") is not None]
  if knn:
    ax.scatter([v for _, v in knn], [y for y, _ in knn], marker="D", color="tab:orange", zorder=3,
               label="kNN")
  raw = [r["raw_pixel_top1"] for r in rows if r.get("raw_pixel_top1") is not None]
  if raw:
    ax.axvline(raw[0], color="gray", ls="--", lw=1, label="raw pixels")
  ax.set_yticks(ys, [r["run"] for r in rows], fontsize=7)
  low = min([r["probe_top1"] for r in rows] + [v for _, v in knn] + raw)
  ax.set_xlim(max(0.0, low - 0.05), 1.0), ax.set_xlabel("test top-1")
  ax.set_title("linear probe top-1 by run"), ax.legend(fontsize=7, loc="lower right")
  ax.grid(alpha=0.3, axis="x")
  save_figure(fig, path)
  return True


def save_image_grid(path: pathlib.Path, rows: dict, title: str = "") -> None:
  """One row of images per entry of ``rows`` (name -> (N, H, W, C) floats in [0, 1]), for the
  objectives' own figures: an autoencoder's inputs and reconstructions, a GAN's samples."""
  import numpy as np
  cols = max(len(images) for images in rows.values())
  fig = new_figure((cols * 0.9, len(rows) * 0.95 + 0.4))
  axes = fig.subplots(len(rows), cols, squeeze=False)
  for r, (name, images) in enumerate(rows.items()):
    for c in range(cols):
      ax = axes[r][c]
      ax.set_xticks([]), ax.set_yticks([])
      if c < len(images):
        image = np.clip(np.asarray(images[c], np.float32), 0, 1)
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
      else:
        ax.axis("off")
    axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout(), save_figure(fig, pathlib.Path(path), dpi=100, tight=False)
