"""The results table's two plots: the pooled linear probe per row (mean, 95% CI over pretraining
seeds, coloured by family) with the untrained encoder and raw pixels as lines, and the learning
curve (the same probe against pretraining epochs, one seed) with the untrained encoder's level.
Drawn like every other plot of the project (``ssljax.evaluate.plots``: a Figure of its own, no
pyplot)."""
from __future__ import annotations

import pathlib

import matplotlib.patches

from ssljax.benchmark.aggregate import HEADLINE
from ssljax.benchmark.suite import FAMILIES
from ssljax.evaluate.plots import colors, new_figure, save_figure


def family_colors() -> dict[str, str]:
  return dict(zip(FAMILIES, colors()))


def plot_probe_bars(document: dict, path: pathlib.Path) -> bool:
  """Rows with a finished run, in table order from the top; False when there is nothing to draw."""
  rows = [r for r in document["rows"] if r["figures"].get(HEADLINE)]
  if not rows:
    return False
  fig = new_figure((7.5, 0.42 * len(rows) + 1.6))
  ax = fig.subplots()
  ys = list(range(len(rows)))[::-1]
  stats = [r["figures"][HEADLINE] for r in rows]
  palette = family_colors()
  ax.barh(ys, [s["mean"] for s in stats], xerr=[s["ci95"] or 0.0 for s in stats], capsize=3,
          color=[palette[r["family"]] for r in rows], alpha=0.85)
  for y, s in zip(ys, stats):
    ax.text(s["mean"] + (s["ci95"] or 0.0) + 0.002, y, f"{s['mean']:.3f} (n={s['n']})",
            va="center", fontsize=7)
  levels = [s["mean"] for s in stats]
  untrained = document["controls"]["random_init"]["figures"].get(HEADLINE)
  if untrained:
    ax.axvline(untrained["mean"], color="black", ls="--", lw=1,
               label=f"untrained encoder {untrained['mean']:.3f}")
    if untrained["ci95"]:
      ax.axvspan(untrained["mean"] - untrained["ci95"], untrained["mean"] + untrained["ci95"],
                 color="black", alpha=0.08)
    levels.append(untrained["mean"])
  raw = document["controls"]["raw_pixels"]
  if raw:
    ax.axvline(raw["top1"], color="gray", ls=":", lw=1, label=f"raw pixels {raw['top1']:.3f}")
    levels.append(raw["top1"])
  handles, _ = ax.get_legend_handles_labels()
  handles += [matplotlib.patches.Patch(color=palette[family], label=family.replace("_", " "))
              for family in dict.fromkeys(r["family"] for r in rows)]
  ax.set_yticks(ys, [r["name"] for r in rows], fontsize=8)
  ax.set_xlim(max(0.0, min(levels) - 0.03), min(1.0, max(levels) + 0.03))
  ax.set_xlabel("linear probe test top-1, pooled features (95% CI over pretraining seeds)")
  ax.set_title(document["title"], fontsize=10)
  ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0)
  ax.grid(alpha=0.3, axis="x")
  save_figure(fig, path)
  return True


def plot_curve(curve: dict | None, path: pathlib.Path) -> bool:
  """One line per row through its budgets; the untrained encoder as a dashed line."""
  if not curve:
    return False
  fig = new_figure((6, 4))
  ax = fig.subplots()
  for name, points in curve["rows"].items():
    ax.errorbar([p["epochs"] for p in points], [p["top1"] for p in points],
                yerr=[p["ci95"] or 0.0 for p in points], marker="o", capsize=3, label=name)
  if curve.get("random_init") is not None:
    ax.axhline(curve["random_init"], color="black", ls="--", lw=1,
               label=f"untrained encoder {curve['random_init']:.3f}")
  ax.set_xscale("log")
  ax.minorticks_off()  # the log axis's minor labels ("2x10^0") would sit between the budgets
  ax.set_xticks(curve["epochs"], [f"{e:g}" for e in curve["epochs"]])
  ax.set_xlabel("pretraining epochs (log scale)")
  ax.set_ylabel("linear probe test top-1, pooled")
  ax.set_title(f"learning curve (seed {curve['seed']}; CI over probe seeds)", fontsize=10)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
  ax.grid(alpha=0.3)
  save_figure(fig, path)
  return True
