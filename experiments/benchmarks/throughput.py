"""Train-step throughput of an encoder x objective, with a PyTorch eager reference in the same run.

    python experiments/benchmarks/throughput.py --encoder cnn --objective infonce --batch 128
    python experiments/benchmarks/throughput.py --encoder resnet18 --batch 128 --input-shape 32,32,3
    python experiments/benchmarks/throughput.py --encoder vit_tiny --objective mae --no-torch

Prints: compile time; the median time of the compiled step (B dataset images per step; InfoNCE
turns them into 2B views); model FLOPs per view from XLA's cost analysis; achieved FLOP/s; the
end-to-end rate (input pipeline + views + step, as the training loop runs it) against the bare step;
the PyTorch reference (same model, loss, batch, views) and the ratio. The machine is noisy: each
figure is a median over --steps steps, and the comparison is made within one run. This CPU has
no published peak, so MFU is taken against its measured float32 GEMM rate (a 2048^3 matrix product
on every device at once): a practical yardstick, not the hardware's ceiling. Last line: ``views_per_s=<float>``.
"""
from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
import time

from timing import median_seconds


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--encoder", default="cnn")
  p.add_argument("--objective", default="infonce")
  p.add_argument("--batch", type=int, default=128, help="dataset images per step")
  p.add_argument("--input-shape", default="28,28,1", help="H,W,C")
  p.add_argument("--cnn-widths", default=None,
                 help="channels of the small CNN's stages, e.g. 32,64,128,128 (default: the quickstart's)")
  p.add_argument("--devices", type=int, default=0, help="CPU host devices (0 = one per core)")
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU/TPU, float32 on CPU) | float32 | bfloat16")
  p.add_argument("--profile", type=int, default=0, metavar="K",
                 help="trace a few steps with the JAX profiler and print the K costliest XLA ops")
  p.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True,
                 help="also measure the PyTorch reference (needs the 'bench' extra)")
  return p.parse_args(argv)


# Runtime frames that contain the ops (dispatch, waits, collectives' rendezvous), not ops themselves.
_NOT_OPS = ("Thunk", "ThreadPool", ".py:", "Pjit", "Execute", "Wait", "Rendezvous")


def print_costliest_ops(run_step, top: int, steps: int = 3) -> None:
  """Traces ``steps`` steps and prints the ``top`` XLA ops by total time (summed over devices)."""
  import collections
  import gzip
  import json
  import tempfile

  import jax
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    for _ in range(steps):
      out = run_step()
    jax.block_until_ready(out)
    jax.profiler.stop_trace()
    trace = next(pathlib.Path(trace_dir).rglob("*.trace.json.gz"))
    events = json.load(gzip.open(trace))["traceEvents"]
  by_op = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and not any(k in e["name"] for k in _NOT_OPS):
      by_op[e["name"]] += e["dur"]
  total = sum(by_op.values())
  print(f"profile: {total / steps / 1e3:.1f} ms of XLA ops per step (all devices); costliest:")
  for name, dur in by_op.most_common(top):
    print(f"  {dur / steps / 1e3:8.1f} ms {100 * dur / total:5.1f}%  {name}")


def quickstart_cnn_widths() -> tuple[int, ...]:
  """The CNN widths of ``experiments/fmnist_infonce.py``, so the benchmark measures what users run."""
  from ssljax.base_config import load_experiment
  path = pathlib.Path(__file__).parents[1] / "fmnist_infonce.py"
  return tuple(load_experiment(path).encoders.cnn.widths)


def measured_gemm_gflop_s(mesh, n: int = 2048, repeats: int = 5) -> float:
  """float32 GEMM rate with every device of ``mesh`` multiplying its own n x n pair at once."""
  import jax
  import jax.numpy as jnp
  from jax.sharding import NamedSharding, PartitionSpec
  sharding = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
  a = jax.device_put(jnp.ones((mesh.size, n, n), jnp.float32), sharding)
  matmul = jax.jit(lambda a: a @ a, out_shardings=sharding)
  return 2 * n ** 3 * mesh.size / median_seconds(lambda: jax.block_until_ready(matmul(a)),
                                                 repeats) / 1e9


# Published dense (no 2:4 sparsity) bf16 matrix peaks per device in TFLOP/s, by jax's device_kind:
# the first key found in it as whole words wins, so the more specific names come first. A kind not
# listed (H100 NVL, other GPUs, every CPU) has no peak and MFU is nan: a guessed ceiling would make
# the figure meaningless. NVIDIA's datasheets print bf16 "with sparsity", twice the dense rate.
PEAK_BF16_TFLOP_S = (
    ("H100 PCIe", 756),       # NVIDIA H100 datasheet, PCIe: 1,513 with sparsity
    ("H100 80GB HBM3", 989),  # H100 SXM5's device_kind; datasheet: 1,979 with sparsity
    ("H100 SXM", 989),
    ("H200", 989),            # NVIDIA H200 datasheet: the H100 SXM's tensor cores, more memory
    ("A100", 312),            # NVIDIA A100 datasheet (SXM4 and PCIe alike)
    ("L4", 121),              # NVIDIA L4 datasheet: 242 with sparsity
    ("TPU v4", 275),          # Cloud TPU v4 system architecture: peak compute per chip (bf16)
    ("TPU v5 lite", 197),     # Cloud TPU v5e docs (device_kind "TPU v5 lite")
    ("TPU v5p", 459),         # Cloud TPU v5p docs
    ("TPU v5", 459),          # v5p's device_kind
    ("TPU v6 lite", 918),     # Cloud TPU v6e (Trillium) docs
)


def published_peak_tflop_s(device_kind: str | None) -> float:
  """The published dense bf16 peak of one device of ``device_kind``; nan when not in the table."""
  import re
  for key, peak in PEAK_BF16_TFLOP_S:
    if device_kind and re.search(rf"(?<![\w-]){re.escape(key)}(?![\w])", device_kind):
      return float(peak)
  return float("nan")


def measure(encoder: str, objective: str, batch: int, shape: tuple, steps: int, dtype: str,
            cnn_widths: tuple | None = None, end_to_end: bool = True, profile: int = 0,
            encoder_args: dict | None = None, gemm_yardstick: bool = True) -> dict:
  """Compiles and times the generic train step of ``encoder`` x ``objective`` on synthetic images
  over every device; returns the figures ``main`` prints (seconds, FLOPs, views, MFU).
  ``encoder_args`` override the encoder's section (e.g. a narrower ResNet); ``gemm_yardstick``:
  measure the float32 GEMM rate when the device has no published peak (seconds on a CPU)."""
  import jax
  import numpy as np

  from ssljax.accelerator import compute_dtype
  from ssljax.base_config import base_config
  from ssljax.data.sources import Dataset
  from ssljax.train import loop

  config = base_config()
  config.encoder, config.objective, config.batch_size = encoder, objective, batch
  config.steps, config.dtype, config.wandb.mode = 10_000, dtype, "disabled"
  config.encoders.cnn.widths = tuple(cnn_widths or quickstart_cnn_widths())
  config.encoders[encoder].update(encoder_args or {})
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (batch * 8, *shape), np.uint8)
  labels = rng.integers(0, 10, len(images)).astype(np.int32)
  data = Dataset("synthetic", images, labels, images[:64], labels[:64], 10)
  exp = loop.build_experiment(config, data)
  state = loop.initial_state(exp)
  step_fn = loop.compiled_train_step(exp)
  batch_arrays = exp.stream.batch(0)
  t0 = time.perf_counter()
  compiled = step_fn.lower(state, batch_arrays).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  # The cost analysis of an SPMD program is that of one device's share: scale to the whole step.
  flops = exp.mesh.size * float(cost.get("flops", float("nan"))) if cost else float("nan")
  views_per_step = batch * exp.objective.views_per_image

  def one_step():
    nonlocal state
    state, out = compiled(state, batch_arrays)
    return jax.block_until_ready(out)
  step_s = median_seconds(one_step, steps, warmup=1)
  result = {"devices": exp.mesh.size, "device_kind": jax.devices()[0].device_kind,
            "dtype": compute_dtype(dtype), "compile_s": compile_s, "step_s": step_s,
            "flops": flops, "views_per_step": views_per_step,
            "views_per_s": views_per_step / step_s, "model_flop_s": flops / step_s}
  peak = published_peak_tflop_s(result["device_kind"]) * 1e12 * exp.mesh.size
  result.update(peak_flop_s=peak, mfu=result["model_flop_s"] / peak)
  if end_to_end:
    # As the training loop runs it: host batch gather + transfer + dispatch, one sync.
    def timed_loop(make_batch):
      nonlocal state
      t = time.perf_counter()
      for s in range(steps):
        state, out = compiled(state, make_batch(s))
      jax.block_until_ready(out)
      return (time.perf_counter() - t) / steps
    # Alternate the two, three rounds each, and compare medians: load drifts on a shared machine.
    rounds = [(timed_loop(lambda s: batch_arrays), timed_loop(lambda s: exp.stream.batch(s + 1)))
              for _ in range(3)]
    result["bare_s"], result["e2e_s"] = (float(np.median(r)) for r in zip(*rounds))
  if profile:
    print_costliest_ops(one_step, profile)
  if gemm_yardstick and math.isnan(result["mfu"]):  # no published peak: the measured GEMM rate
    result["gemm_flop_s"] = measured_gemm_gflop_s(exp.mesh) * 1e9
  return result


def main(argv=None):
  args = parse_args(argv)
  shape = tuple(int(v) for v in args.input_shape.split(","))
  import jax
  jax.config.update("jax_num_cpu_devices", args.devices or os.cpu_count() or 1)
  from ssljax.accelerator import warn_if_accelerator_unused
  warn_if_accelerator_unused()

  cnn_widths = (tuple(int(v) for v in args.cnn_widths.split(",")) if args.cnn_widths
                else quickstart_cnn_widths())
  r = measure(args.encoder, args.objective, args.batch, shape, args.steps, args.dtype,
              cnn_widths, profile=args.profile)
  step_s, flops, views_per_step = r["step_s"], r["flops"], r["views_per_step"]
  views_per_s = r["views_per_s"]
  widths = f" widths={','.join(map(str, cnn_widths))}" if args.encoder == "cnn" else ""
  print(f"encoder={args.encoder}{widths} objective={args.objective} batch={args.batch} input={shape} "
        f"devices={r['devices']} dtype={r['dtype']} device_kind={r['device_kind']!r}")
  print(f"compile_s={r['compile_s']:.2f}")
  print(f"median_step_ms={step_s * 1e3:.1f} (over {args.steps} steps)")
  achieved = r["model_flop_s"] / 1e9
  if "gemm_flop_s" in r:
    peak = r["gemm_flop_s"] / 1e9
    yardstick = f"gemm_peak_gflop_s={peak:.1f} mfu={achieved / peak:.3f} (of the measured float32 GEMM rate)"
  else:
    yardstick = (f"peak_gflop_s={r['peak_flop_s'] / 1e9:.0f} mfu={r['mfu']:.3f} (of the published "
                 f"dense bf16 peak of {r['devices']} x {r['device_kind']})")
  print(f"gflops_per_view={flops / views_per_step / 1e9:.4f} achieved_gflop_s={achieved:.1f} "
        f"{yardstick}")
  print(f"images_per_s bare={args.batch / r['bare_s']:.1f} end_to_end={args.batch / r['e2e_s']:.1f} "
        f"ratio={r['bare_s'] / r['e2e_s']:.3f}")
  if args.torch and args.objective == "infonce" and args.encoder in ("cnn", "resnet18"):
    try:
      sys.path.insert(0, str(pathlib.Path(__file__).parent))
      import torch_reference
    except ImportError as e:
      print(f"torch reference skipped ({e}); install with: pip install -e '.[bench]'")
    else:
      ref = torch_reference.measure(args.encoder, args.batch, shape, args.steps,
                                    threads=os.cpu_count(), cnn_widths=cnn_widths)
      torch_gflop_s = flops / views_per_step * ref["views_per_s"] / 1e9
      print(f"torch_views_per_s={ref['views_per_s']:.1f} (threads={ref['threads']}) "
            f"ratio_vs_torch={views_per_s / ref['views_per_s']:.3f}")
      print(f"torch_achieved_gflop_s={torch_gflop_s:.1f} (same model FLOPs) "
            f"torch_gemm_gflop_s={torch_reference.gemm_gflop_s():.1f}")
  print(f"views_per_s={views_per_s:.1f}")




if __name__ == "__main__":
  from ssljax.host_memory import reexec_with_tuned_malloc
  reexec_with_tuned_malloc()  # as the training CLI does; SSLJAX_MALLOC_TUNING=0 measures without
  main()
