"""The evaluation figures, drawn for one run or many: the same function makes a run's plot (one
entry) and the comparison report's plot (one entry per run), so the two read the same way.

- the alignment-uniformity plane (Wang & Isola 2020, Fig. 1): x = uniformity, y = alignment, lower
  left is better; the encoder's point and, where there is one, the projector's;
- the transfer curve: test top-1 on the transfer dataset against the number of frozen stages, from
  full fine-tune (0) to linear probe (all), with from-scratch as a dashed line;
- the invariance probe: cosine of f(x) with f(T(x)) against that of random pairs, per transform.
"""
from __future__ import annotations

import math
import pathlib

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path: pathlib.Path) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  # bbox "tight" grows the saved area to hold labels and an outside legend, axes keep their size.
  fig.savefig(path, dpi=120, bbox_inches="tight"), plt.close(fig)


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
  fig, ax = plt.subplots(figsize=(6, 4.2))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for i, (label, pts) in enumerate(points.items()):
    color = colors[i % len(colors)]
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
  fig, ax = plt.subplots(figsize=(6.5, 4))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  ticks = {}
  for i, (label, t) in enumerate(runs.items()):
    color = colors[i % len(colors)]
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
  fig, ax = plt.subplots(figsize=(6, 3.6))
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
