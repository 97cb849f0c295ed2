"""The run's report: ``report.json`` (machine-readable, contract keys), ``report.md`` (a table a person
reads at a glance, the transfer table under it) and ``plots/*.png``; with W&B on, the same table and
plots as ``wandb.Table`` / ``wandb.Image``. Many runs side by side: ``ssljax.report``."""
from __future__ import annotations

import json
import math
import pathlib

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402

from ssljax.evaluate.plots import plot_align_uniform, plot_invariance, plot_transfer  # noqa: E402
from ssljax.metric_names import headline_losses  # noqa: E402
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
  loss_keys = list(headline_losses(records[-1]))
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
  import numpy as np
  fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(bars)), 3.5))
  x = np.arange(len(bars))
  width = 0.38
  err = lambda s: 0 if s.get("top1_ci95") is None or math.isnan(s["top1_ci95"]) else s["top1_ci95"]
  values = [b[1]["top1"] for b in bars]
  ax.bar(x - width / 2, values, width, yerr=[err(b[1]) for b in bars], capsize=3,
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
  fig.tight_layout(), fig.savefig(workdir / "plots" / "probe_accuracy.png", dpi=120), plt.close(fig)
  return ["plots/probe_accuracy.png"]


def save_image_grid(path: pathlib.Path, rows: dict[str, "np.ndarray"], title: str = "") -> None:
  """One row of images per entry of ``rows`` (name -> (N, H, W, C) floats in [0, 1]), for the
  objectives' own figures: an autoencoder's inputs and reconstructions, a GAN's samples."""
  import numpy as np
  cols = max(len(images) for images in rows.values())
  fig, axes = plt.subplots(len(rows), cols, figsize=(cols * 0.9, len(rows) * 0.95 + 0.4),
                           squeeze=False)
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
  fig.tight_layout(), fig.savefig(path, dpi=100), plt.close(fig)


def _versus(trained: dict | None, untrained: dict | None) -> str:
  """The suffix ' — untrained encoder Y (+Z)': a figure beside the untrained encoder's."""
  if not trained or not untrained or untrained.get("top1") is None:
    return ""
  return f" — untrained encoder {_fmt(untrained['top1'])} ({trained['top1'] - untrained['top1']:+.4f})"


def headline(report: dict) -> str | None:
  """The first line of report.md: the headline probe and kNN against the untrained encoder."""
  probe, knn = report.get("linear_probe", {}), report.get("knn", {})
  if "top1" not in probe:
    return None
  control = report.get("random_init", {})
  line = f"**linear probe ({probe['features']}): {_fmt(probe['top1'])}"
  line += _versus(probe, control.get("linear_probe"))
  if "top1" in knn:
    line += f"; kNN ({knn['features']}): {_fmt(knn['top1'])}" + _versus(knn, control.get("knn"))
  return line + "**"


def figure_rows(report: dict) -> list[tuple[str, str]]:
  """(figure, value) rows of the report's main table; also the W&B table."""
  pre = report["pretrain"]
  rows = [("pretrain steps / epochs", f"{pre['steps']} / {pre['epochs']:.2f}"),
          ("pretrain wall time (s)", _fmt(pre["wall_s"], 1)),
          ("pretrain images/s", _fmt(pre["images_per_s"], 1)),
          ("devices", str(pre["devices"])),
          ("final loss", _fmt(pre["final_loss"]))]
  probe = report.get("linear_probe", {})
  control = report.get("random_init", {})
  if "top1" in probe:
    rows.append((f"linear probe top-1 ({probe['features']} features, {probe['seeds']} seeds, 95% CI)",
                 _pm(probe) + _versus(probe, control.get("linear_probe"))))
    rows += [("linear probe top-5", _pm(probe, "top5") if "top5" in probe else "–"),
             ("probe validation top-1 (chose lr, wd)",
              f"{_fmt(probe['val_top1'])} (lr={probe['chosen']['lr']}, wd={probe['chosen']['wd']})")]
    for name, other in report.get("linear_probes", {}).items():
      if name != probe["features"]:
        rows.append((f"linear probe top-1 ({name} features)",
                     _pm(other) + _versus(other, control.get("linear_probes", {}).get(name))))
  elif probe:
    rows.append(("linear probe", probe.get("skipped", "–")))
  if "raw_pixel_probe" in report:
    ref = RAW_PIXEL_REFERENCE.get(report["dataset"])
    rows.append(("raw-pixel linear probe top-1 (same protocol)",
                 _pm(report["raw_pixel_probe"]) + (f" (published: {ref})" if ref else "")))
  if "knn" in report:
    knn = report["knn"]
    rows.append((f"kNN top-1 (k={knn['k']}, τ={knn['temperature']}, {knn['features']})",
                 _fmt(knn["top1"]) + _versus(knn, control.get("knn"))))
    if "val_top1" in knn:
      rows.append(("kNN validation top-1", _fmt(knn["val_top1"])))
  if "online_probe" in report:
    rows += [("online probe top-1", _fmt(report["online_probe"]["top1"])),
             ("offline − online gap", _fmt(report["online_probe"]["offline_minus_online"]))]
  rows += [("alignment, encoder (lower = views closer)", _fmt(report.get("align"))),
           ("uniformity, encoder (lower = more uniform)", _fmt(report.get("uniform")))]
  if isinstance(report.get("projector"), dict):
    rows += [("alignment, projector", _fmt(report["projector"]["align"])),
             ("uniformity, projector", _fmt(report["projector"]["uniform"]))]
  for name, inv in report.get("invariance", {}).items():
    if isinstance(inv, dict) and "score" in inv:
      rows.append((f"invariance to {name}: score (cos pair vs random)",
                   f"{_fmt(inv['score'], 3)} ({_fmt(inv['pair_cos'], 3)} vs "
                   f"{_fmt(inv['random_cos'], 3)})"))
  transfer = report.get("transfer", {})
  if transfer.get("rows"):
    by = {r["row"]: r["top1"] for r in transfer["rows"]}
    rows.append((f"transfer to {transfer['dataset']}: linear probe / full fine-tune / from scratch",
                 " / ".join(_fmt(by.get(k)) for k in ("linear probe", "full fine-tune",
                                                     "from scratch"))))
  elif "skipped" in transfer:
    rows.append(("transfer", transfer["skipped"]))
  return rows


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
    lines.append(f"| {r['row']} | {k} | {r['trainable_encoder_params']:,} | {_fmt(r['top1'])} |")
  stages = "; ".join(f"{s}: {', '.join(p) or '(no parameters)'}"
                     for s, p in transfer["stages"].items())
  return lines + ["", f"Stages and their parameters: {stages}.", ""]


def markdown(report: dict, plots: list[str]) -> str:
  lines = [f"# {report['objective']} · {report['encoder']} · {report['dataset']}", ""]
  if headline(report):
    lines += [headline(report), ""]
  lines += ["| figure | value |", "|---|---|"]
  lines += [f"| {name} | {value} |" for name, value in figure_rows(report)]
  lines.append("")
  if report.get("transfer", {}).get("rows"):
    lines += transfer_table(report["transfer"])
  lines += [*[f"![{p}]({p})" for p in plots], ""]
  return "\n".join(lines)


def evaluation_plots(report: dict, workdir: pathlib.Path) -> list[str]:
  label = {report["encoder"]: report}
  made = []
  if plot_align_uniform(label, workdir / "plots" / "align_uniform.png"):
    made.append("plots/align_uniform.png")
  if plot_invariance({report["encoder"]: report.get("invariance")}, workdir / "plots" / "invariance.png"):
    made.append("plots/invariance.png")
  if plot_transfer({report["encoder"]: report.get("transfer")}, workdir / "plots" / "transfer.png"):
    made.append("plots/transfer.png")
  return made


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
  (workdir / "report.md").write_text(markdown(report, plots))
  return report
