"""Peak resident memory of a whole run (pretraining + evaluation), and where the run's time went.

    python experiments/benchmarks/peak_rss.py                      # the quickstart, 200 steps
    python experiments/benchmarks/peak_rss.py --steps 0            # the quickstart as shipped
    python experiments/benchmarks/peak_rss.py --config experiments/fmnist_vicreg.py --steps 50

Runs ``python -m ssljax.pretrain`` as a child process, exactly as a user does, samples its resident
set (``/proc/PID/status``, every 0.2 s) and reads the kernel's own peak (``getrusage`` of the
children, the figure ``/usr/bin/time -v`` prints as "Maximum resident set size"). The evaluation's
memory does not depend on how long pretraining ran, so a short run (``--steps``) measures the
quickstart's peak; its evaluation share does depend on it, so the share is also extrapolated to
the configured length from the measured images/s.

The reference in the same run is the largest array the evaluation must hold: the train split's
flattened final map in float32 (``N x D x 4`` bytes); the peak is printed as a multiple of it.
Writes ``WORKDIR/rss.png`` (resident memory over time). Last line: ``peak_rss_gib=<float>
eval_share=<float>``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import resource
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--config", default="experiments/fmnist_infonce.py")
  p.add_argument("--steps", type=int, default=200, help="pretraining steps; 0 = the config's")
  p.add_argument("--workdir", default="runs/peak_rss")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="more config overrides, e.g. probe.extra_features=()")
  return p.parse_args(argv)


def resident_mib(pid: int) -> float | None:
  try:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  except (FileNotFoundError, ProcessLookupError):
    return None
  return None


def run_and_sample(cmd: list[str]) -> tuple[int, list[tuple[float, float]], float]:
  """(exit code, [(seconds, resident MiB)], the kernel's peak for the child in MiB)."""
  start = time.perf_counter()
  child = subprocess.Popen(cmd, cwd=ROOT)
  samples = []
  while child.poll() is None:
    mib = resident_mib(child.pid)
    if mib is not None:
      samples.append((time.perf_counter() - start, mib))
    time.sleep(0.2)
  peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
  return child.returncode, samples, peak


def plot(samples, report: dict, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 3.2))
  ax.plot([t for t, _ in samples], [m / 1024 for _, m in samples], lw=1.2)
  pretrain_s = report.get("pretrain", {}).get("wall_s")
  if pretrain_s:
    ax.axvline(pretrain_s, color="grey", ls="--", lw=0.8)
    ax.text(pretrain_s, ax.get_ylim()[1] * 0.95, " evaluation", va="top", fontsize=8)
  ax.set_xlabel("seconds since launch")
  ax.set_ylabel("resident memory (GiB)")
  ax.set_title("resident memory of one run", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None):
  args = parse_args(argv)
  workdir = ROOT / args.workdir
  shutil.rmtree(workdir, ignore_errors=True)  # a resumed run would skip the pretraining measured
  cmd = [sys.executable, "-m", "ssljax.pretrain", f"--config={args.config}",
         f"--workdir={workdir}", "--config.wandb.mode=disabled",
         *([f"--config.steps={args.steps}"] if args.steps else []),
         *(f"--config.{kv}" for kv in args.set)]
  print("$", " ".join(cmd), flush=True)
  wall0 = time.perf_counter()
  code, samples, peak_mib = run_and_sample(cmd)
  wall = time.perf_counter() - wall0
  if code != 0:
    sys.exit(f"the run failed (exit code {code})")
  report = json.loads((workdir / "report.json").read_text())
  config = json.loads((workdir / "config.json").read_text())
  pretrain_s = report["pretrain"]["wall_s"]
  eval_s = report["eval_wall_s"]
  probes = report.get("linear_probes", {})
  biggest = max((p.get("feature_dim", 0) for p in probes.values()), default=0)
  n_train = report["linear_probe"].get("train_size", 60000)
  reference_gib = n_train * biggest * 4 / 2 ** 30
  # Extrapolated to the configured length: pretraining scales with steps at the measured rate.
  images_per_s = report["pretrain"].get("images_per_s") or 0
  full_epochs = float(config.get("epochs") or 0)
  full_pretrain_s = (full_epochs * n_train / images_per_s) if images_per_s and full_epochs else None
  plot(samples, report, workdir / "rss.png")

  gib = peak_mib / 1024
  print(f"\nwall {wall:.0f} s: pretraining {pretrain_s:.0f} s, evaluation {eval_s:.0f} s "
        f"({report.get('eval_seconds')})")
  print(f"peak resident memory {gib:.2f} GiB (sampled max {max(m for _, m in samples) / 1024:.2f}"
        f" GiB) = {gib / reference_gib:.2f} x the train map features ({reference_gib:.2f} GiB, "
        f"{n_train} x {biggest} float32)" if reference_gib else f"peak {gib:.2f} GiB")
  share = eval_s / (eval_s + pretrain_s)
  if full_pretrain_s:
    full_share = eval_s / (eval_s + full_pretrain_s)
    print(f"evaluation share of this run {share:.2f}; at the config's {full_epochs:g} epochs "
          f"({full_pretrain_s:.0f} s of pretraining at {images_per_s:.0f} images/s): {full_share:.2f}")
    share = full_share
  print(f"plot: {workdir / 'rss.png'}")
  print(f"peak_rss_gib={gib:.3f} eval_share={share:.3f}")


if __name__ == "__main__":
  main()
