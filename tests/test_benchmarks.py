"""The throughput benchmark runs end to end on a tiny CNN and counts a step's FLOPs the same on one
device and on two (XLA's cost analysis of an SPMD program covers one device's share only); the
kNN benchmark runs its fused reference beside the library's split top-k and finds them equal."""
import math
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "benchmarks" / "throughput.py"


def run_throughput(devices: int) -> dict:
  proc = subprocess.run(
      [sys.executable, str(SCRIPT), "--encoder", "cnn", "--cnn-widths", "8,16", "--batch", "16",
       "--steps", "2", "--devices", str(devices), "--no-torch"],
      cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
      text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = proc.stdout.strip().splitlines()
  assert lines[-1].startswith("views_per_s="), lines
  return {k: v for line in lines for k, v in re.findall(r"(\w+)=([\d.]+)", line)}


def test_throughput_reports_whole_step_flops_on_any_device_count():
  one, two = run_throughput(1), run_throughput(2)
  assert one["devices"] == "1" and two["devices"] == "2"
  assert float(one["views_per_s"]) > 0 and 0 < float(two["mfu"]) < 1
  # Same model, same global batch: the same work per view, however many devices share it.
  assert abs(float(two["gflops_per_view"]) / float(one["gflops_per_view"]) - 1) < 0.15


def test_published_peaks_by_device_kind():
  sys.path.insert(0, str(SCRIPT.parent))
  import throughput
  peak = throughput.published_peak_tflop_s
  assert peak("NVIDIA H100 80GB HBM3") == peak("NVIDIA H200") == 989  # H100 SXM's device_kind
  assert peak("NVIDIA H100 PCIe") == 756 and peak("NVIDIA A100-SXM4-80GB") == 312
  assert peak("NVIDIA L4") == 121
  assert peak("TPU v4") == 275 and peak("TPU v5 lite") == 197 and peak("TPU v5") == 459
  assert peak("TPU v5p") == 459 and peak("TPU v6 lite") == 918
  # Unknown kinds get no peak rather than a neighbour's: an L40S is not an L4, an NVL not an SXM.
  for kind in ("NVIDIA L40S", "NVIDIA H100 NVL", "cpu", "", None):
    assert math.isnan(peak(kind)), kind


def test_the_knn_benchmark_compares_the_fused_reference_with_the_library():
  script = ROOT / "experiments" / "benchmarks" / "knn_topk.py"
  proc = subprocess.run([sys.executable, str(script), "--bank", "4096", "--queries", "1024",
                         "--dim", "16", "--k", "20", "--repeats", "1"],
                        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "predictions agree: True" in proc.stdout
  assert "'split': False" in proc.stdout  # the library's top-k never sorts the whole bank
  assert re.search(r"^knn_topk fused_s=[\d.]+ split_s=[\d.]+ speedup=[\d.]+$",
                   proc.stdout.strip().splitlines()[-1])
