"""Every objective on Fashion-MNIST with the same small CNN, the same data and the same budget, probed
the same way: one table (Markdown + JSON) and one bar plot.

    python experiments/benchmarks/objectives_fmnist.py --steps 300 --batch 128 --seeds 3 \
        --probe_train_subset 10000 --out runs/bench_objectives

Each row is ``ssljax.pretrain.run`` on the objective's own experiment config
(``experiments/fmnist_<name>.py``: its optimizer and views) with the budget overridden identically for
all: ``--steps`` of ``--batch`` images, warmup at most 10% of the steps, the default CNN, probe
features ``last_stage``, ``--seeds`` linear-probe seeds. Two controls use the same probe protocol:
the untrained encoder (``random_init``) and raw pixels. Each run has its own workdir under ``--out``;
a run whose report.json exists is reused, so an interrupted benchmark continues where it stopped.

The 95% CI is over probe seeds (Student's t) for one pretraining run, so it measures the probe's
noise, not the pretraining seed's; ``--pretrain_seeds N`` repeats pretraining and puts the CI over
those runs instead. Wall times are for the machine the benchmark ran on, compile included.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# (row key, experiment file, what the row is)
ENTRIES = [
    ("supervised", "fmnist_supervised", "cross-entropy on labels (upper reference)"),
    ("infonce", "fmnist_infonce", "InfoNCE, flip + scale views"),
    ("infonce_flip", "fmnist_infonce_flip", "InfoNCE, flip-only views"),
    ("infonce_scale", "fmnist_infonce_scale", "InfoNCE, scale-only views"),
    ("align_uniform", "fmnist_align_uniform", "alignment + uniformity, flip + scale views"),
    ("autoencoder", "fmnist_autoencoder", "autoencoder, BCE reconstruction"),
    ("denoising_autoencoder", "fmnist_denoising_autoencoder", "denoising AE, 25% pixels masked"),
    ("gan", "fmnist_gan", "DCGAN, discriminator trunk probed"),
    ("random_init", "fmnist_infonce", "control: the untrained encoder"),
]


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--steps", type=int, default=300, help="pretraining steps per objective")
  p.add_argument("--batch", type=int, default=128, help="global batch size")
  p.add_argument("--seeds", type=int, default=3, help="linear-probe seeds per run (>= 3)")
  p.add_argument("--pretrain_seeds", type=int, default=1, help="pretraining runs per objective")
  p.add_argument("--probe_train_subset", type=int, default=0,
                 help="probe on the first N training images (0 = all 60k)")
  p.add_argument("--probe_epochs", type=int, default=30)
  p.add_argument("--only", default="", help="comma-separated row keys (default: every row)")
  p.add_argument("--out", default="runs/bench_objectives", help="output directory")
  return p.parse_args(argv)


def run_config(experiment: str, args, seed: int):
  from ssljax.base_config import load_experiment
  c = load_experiment(ROOT / "experiments" / f"{experiment}.py")
  c.steps, c.batch_size, c.seed = args.steps, args.batch, seed
  c.encoders.cnn.widths = (32, 64, 128, 128)  # one encoder for every row (the quickstart's is wider)
  c.optimizer.warmup_steps = min(int(c.optimizer.warmup_steps), args.steps // 10)
  c.probe.seeds = args.seeds
  c.probe.epochs = args.probe_epochs
  c.probe.train_subset = args.probe_train_subset
  c.probe.raw_pixel_baseline = False
  c.log_every = max(1, args.steps // 20)
  c.checkpoint_every = 10 ** 9  # the final checkpoint only
  c.keep_checkpoints = 1
  c.wandb.mode = "disabled"
  return c


def untrained_report(config, workdir: pathlib.Path) -> dict:
  """The probes of the randomly initialised encoder, plus the raw-pixel probe (same protocol)."""
  from ssljax.evaluate.run import evaluate
  from ssljax.train.loop import build_experiment, initial_state
  config.probe.raw_pixel_baseline = True
  exp = build_experiment(config)
  report = {"objective": "random_init", "pretrain": {"steps": 0, "wall_s": 0.0, "images_per_s": None},
            **evaluate(exp, initial_state(exp))}
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
  return report


def run_entry(key: str, experiment: str, args, seed: int) -> dict:
  workdir = pathlib.Path(args.out) / key / f"seed{seed}"
  cached = workdir / "report.json"
  if cached.exists():
    report = json.loads(cached.read_text())
    pre = report["pretrain"]
    if pre["steps"] in (args.steps, 0) and pre.get("batch_size") in (args.batch, None):
      print(f"[{key} seed {seed}] reusing {cached}")
      return report
  config = run_config(experiment, args, seed)
  print(f"[{key} seed {seed}] {config.objective}: {args.steps} steps x {args.batch} images")
  t0 = time.perf_counter()
  if key == "random_init":
    report = untrained_report(config, workdir)
  else:
    from ssljax.pretrain import run
    report = run(config, workdir)
  print(f"[{key} seed {seed}] top-1 {report['linear_probe']['top1']:.4f} "
        f"({time.perf_counter() - t0:.0f} s with evaluation)")
  return report


def summarise(key: str, description: str, reports: list[dict]) -> dict:
  from ssljax.evaluate.linear_probe import mean_ci95
  import numpy as np
  probes = [r["linear_probe"] for r in reports]
  if len(reports) > 1:  # CI over pretraining runs
    top1, ci = mean_ci95([p["top1"] for p in probes])
  else:
    top1, ci = probes[0]["top1"], probes[0]["top1_ci95"]
  mean = lambda values: float(np.mean([v for v in values if v is not None])) if any(
      v is not None for v in values) else None
  return {
      "key": key, "description": description, "objective": reports[0]["objective"],
      "top1": top1, "top1_ci95": ci, "probe_seeds": probes[0]["seeds"],
      "pretrain_runs": len(reports),
      "knn_top1": mean([r.get("knn", {}).get("top1") for r in reports]),
      "align": mean([r.get("align") for r in reports]),
      "uniform": mean([r.get("uniform") for r in reports]),
      "wall_s": mean([r["pretrain"]["wall_s"] for r in reports]),
      "images_per_s": mean([r["pretrain"].get("images_per_s") for r in reports]),
  }


def _f(value, digits=4):
  return "–" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[dict], raw: dict | None, args, started: str) -> str:
  ci_over = "pretraining runs" if args.pretrain_seeds > 1 else "linear-probe seeds"
  subset = args.probe_train_subset or "all 60,000"
  lines = [
      "# Objectives on Fashion-MNIST: same CNN, same budget, same probe", "",
      f"Budget per objective: {args.steps} steps x {args.batch} images "
      f"({args.steps * args.batch / 60000:.2f} epochs), warmup <= 10% of the steps, the default "
      f"`cnn` encoder (widths 32-64-128-128), {args.pretrain_seeds} pretraining run(s). Linear probe "
      f"on `last_stage` features, trained on {subset} training images for {args.probe_epochs} "
      f"epochs, lr/wd chosen on a validation split, {args.seeds} seeds; top-1 on the 10,000 test "
      f"images, ± the 95% CI over {ci_over}. kNN: k=200 on pooled features. align/uniform: "
      "Wang & Isola on L2-normalised pooled features of test images under flip + scale views "
      f"(lower = better for both). Run started {started}.", "",
      "| objective | what | linear probe top-1 | kNN top-1 | align | uniform | pretrain wall (s) |",
      "|---|---|---|---|---|---|---|"]
  for r in rows:
    ci = "" if r["top1_ci95"] is None or r["top1_ci95"] != r["top1_ci95"] else f" ± {r['top1_ci95']:.4f}"
    lines.append(f"| `{r['key']}` | {r['description']} | {r['top1']:.4f}{ci} | {_f(r['knn_top1'])} | "
                 f"{_f(r['align'], 3)} | {_f(r['uniform'], 3)} | {_f(r['wall_s'], 0)} |")
  if raw:
    lines.append(f"| raw pixels | control: logistic regression on pixels, same protocol | "
                 f"{raw['top1']:.4f} ± {raw['top1_ci95']:.4f} | – | – | – | – |")
  lines += ["", "![probe top-1](objectives_fmnist.png)", ""]
  return "\n".join(lines)


def bar_plot(rows: list[dict], raw: dict | None, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  names = [r["key"] for r in rows]
  values = [r["top1"] for r in rows]
  errs = [0 if r["top1_ci95"] is None or r["top1_ci95"] != r["top1_ci95"] else r["top1_ci95"]
          for r in rows]
  fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
  ax.barh(names[::-1], values[::-1], xerr=errs[::-1], capsize=3, color="tab:blue")
  for i, v in enumerate(values[::-1]):
    ax.text(v + 0.002, i, f"{v:.3f}", va="center", fontsize=8)
  if raw:
    ax.axvline(raw["top1"], color="tab:red", ls="--", lw=1, label=f"raw pixels {raw['top1']:.3f}")
    ax.legend(loc="lower right", fontsize=8)
  low = min(values + ([raw["top1"]] if raw else []))
  ax.set_xlim(max(0.0, low - 0.05), min(1.0, max(values) + 0.03))
  ax.set_xlabel("linear probe test top-1 (95% CI)")
  ax.set_title("Fashion-MNIST: objectives, same CNN and budget", fontsize=10)
  fig.tight_layout(), fig.savefig(path, dpi=120), plt.close(fig)


def main(argv=None):
  args = parse_args(argv)
  if args.seeds < 3:
    raise SystemExit("--seeds must be >= 3 (a CI from fewer seeds is meaningless)")
  import jax
  jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)  # CPU: one device per core
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  started = time.strftime("%Y-%m-%d %H:%M")
  only = {k for k in args.only.split(",") if k}
  rows, raw = [], None
  for key, experiment, description in ENTRIES:
    if only and key not in only:
      continue
    seeds = [0] if key == "random_init" else range(args.pretrain_seeds)
    reports = [run_entry(key, experiment, args, seed) for seed in seeds]
    rows.append(summarise(key, description, reports))
    raw = reports[0].get("raw_pixel_probe", raw)
    result = {"args": vars(args), "rows": rows, "raw_pixels": raw, "started": started,
              "devices": jax.device_count()}
    (out / "objectives_fmnist.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "objectives_fmnist.md").write_text(markdown(rows, raw, args, started))
    bar_plot(rows, raw, out / "objectives_fmnist.png")
  print((out / "objectives_fmnist.md").read_text())


if __name__ == "__main__":
  from ssljax.host_memory import reexec_with_tuned_malloc
  reexec_with_tuned_malloc()  # as the training CLI does; SSLJAX_MALLOC_TUNING=0 measures without
  main()
