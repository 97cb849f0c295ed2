"""The run's report: ``report.json`` (machine-readable, contract keys), ``report.md`` (a table a person
reads at a glance) and ``plots/*.png``."""
from __future__ import annotations

import json
import math
import pathlib

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402

from ssljax.tracking import read_metrics  # noqa: E402

RAW_PIXEL_REFERENCE = {"fashion_mnist": 0.842}  # published logistic regression on raw pixels


def _fmt(value, digits=4) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "–"
  return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _pm(section: dict, key: str = "top1") -> str:
  ci = section.get(f"{key}_ci95")
  return _fmt(section.get(key)) + (f" ± {_fmt(ci)}" if ci is not None and not math.isnan(ci) else "")


def plot_pretraining(workdir: pathlib.Path) -> list[str]:
  records = read_metrics(workdir)
  if not records:
    return []
  plots = []
  steps = [r["step"] for r in records]
  loss_keys = [k for k in records[-1] if k == "loss" or k.endswith("/loss") and "probe" not in k]
  fig, ax = plt.subplots(figsize=(6, 3.5))
  for key in loss_keys or ["total_loss"]:
    ax.plot(steps, [r.get(key, math.nan) for r in records], label=key)
  ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.set_title("pretraining loss")
  ax.legend(), ax.grid(alpha=0.3)
  fig.tight_layout(), fig.savefig(workdir / "plots" / "pretrain_loss.png", dpi=120), plt.close(fig)
  plots.append("plots/pretrain_loss.png")
  if any("online_probe/acc" in r for r in records):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [r.get("online_probe/acc", math.nan) for r in records])
    ax.set_xlabel("step"), ax.set_ylabel("train-batch top-1"), ax.grid(alpha=0.3)
    ax.set_title("online probe accuracy during pretraining")
    fig.tight_layout(), fig.savefig(workdir / "plots" / "online_probe.png", dpi=120), plt.close(fig)
    plots.append("plots/online_probe.png")
  return plots


def plot_probes(report: dict, workdir: pathlib.Path) -> list[str]:
  bars = [(name, report[key]["top1"], report[key].get("top1_ci95"))
          for name, key in (("raw pixels", "raw_pixel_probe"), ("linear probe", "linear_probe"),
                            ("kNN", "knn"), ("online probe", "online_probe"))
          if isinstance(report.get(key), dict) and "top1" in report[key]]
  if not bars:
    return []
  fig, ax = plt.subplots(figsize=(6, 3.5))
  errs = [0 if e is None or math.isnan(e) else e for _, _, e in bars]
  ax.bar([b[0] for b in bars], [b[1] for b in bars], yerr=errs, capsize=4, color="tab:blue")
  for i, (_, v, _) in enumerate(bars):
    ax.text(i, v + 0.005, f"{v:.3f}", ha="center", va="bottom")
  low = min(v for _, v, _ in bars)
  ax.set_ylim(max(0.0, low - 0.1), 1.0), ax.set_ylabel("test top-1")
  ax.set_title(f"{report['objective']} / {report['encoder']} on {report['dataset']}")
  fig.tight_layout(), fig.savefig(workdir / "plots" / "probe_accuracy.png", dpi=120), plt.close(fig)
  return ["plots/probe_accuracy.png"]


def markdown(report: dict, plots: list[str]) -> str:
  pre = report["pretrain"]
  lines = [f"# {report['objective']} · {report['encoder']} · {report['dataset']}", "",
           "| figure | value |", "|---|---|"]
  rows = [("pretrain steps / epochs", f"{pre['steps']} / {pre['epochs']:.2f}"),
          ("pretrain wall time (s)", _fmt(pre["wall_s"], 1)),
          ("pretrain images/s", _fmt(pre["images_per_s"], 1)),
          ("devices", pre["devices"]),
          ("final loss", _fmt(pre["final_loss"]))]
  probe = report.get("linear_probe", {})
  if "top1" in probe:
    rows += [(f"linear probe top-1 ({probe['features']} features, {probe['seeds']} seeds, 95% CI)",
              _pm(probe)),
             ("linear probe top-5", _pm(probe, "top5") if "top5" in probe else "–"),
             ("probe validation top-1 (chose lr, wd)",
              f"{_fmt(probe['val_top1'])} (lr={probe['chosen']['lr']}, wd={probe['chosen']['wd']})")]
  elif probe:
    rows.append(("linear probe", probe.get("skipped", "–")))
  if "raw_pixel_probe" in report:
    ref = RAW_PIXEL_REFERENCE.get(report["dataset"])
    rows.append(("raw-pixel linear probe top-1 (same protocol)",
                 _pm(report["raw_pixel_probe"]) + (f" (published: {ref})" if ref else "")))
  if "knn" in report:
    knn = report["knn"]
    rows.append((f"kNN top-1 (k={knn['k']}, τ={knn['temperature']}, {knn['features']})",
                 _fmt(knn["top1"])))
  if "online_probe" in report:
    rows += [("online probe top-1", _fmt(report["online_probe"]["top1"])),
             ("offline − online gap", _fmt(report["online_probe"]["offline_minus_online"]))]
  rows += [("alignment (lower = views closer)", _fmt(report.get("align"))),
           ("uniformity (lower = more uniform)", _fmt(report.get("uniform")))]
  lines += [f"| {name} | {value} |" for name, value in rows]
  lines += ["", *[f"![{p}]({p})" for p in plots], ""]
  return "\n".join(lines)


def write_report(workdir: pathlib.Path, report: dict, extra_plots: list[str] = ()) -> dict:
  """Writes report.json, report.md and the plots; ``extra_plots`` are files already in plots/."""
  workdir = pathlib.Path(workdir)
  (workdir / "plots").mkdir(exist_ok=True)
  plots = (plot_pretraining(workdir) + plot_probes(report, workdir)
           + [f"plots/{name}" for name in extra_plots])
  report["plots"] = plots
  (workdir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
  (workdir / "report.md").write_text(markdown(report, plots))
  return report
