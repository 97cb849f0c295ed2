"""The one-shot check of a GPU/TPU machine: everything the CPU suite cannot prove, in one run.

    experiments/benchmarks/accelerator_check.sh        (the same: python accelerator_check.py)

Prints the device and versions; the ResNet-18 (CIFAR stem, 32x32x3) InfoNCE step in bf16 (float32
parameters) at batch 512 and 1024 with its model FLOP/s and MFU against the device's published
dense bf16 peak (``throughput.PEAK_BF16_TFLOP_S``); the quickstart CNN's step; the loss and gradient norm of two steps on 1 and on N devices when N > 1; a short pretrain +
linear probe (the smoke config on scikit-learn's digits, through the CLI); and a kill -9 of such a
run, resumed by the same command, against an uninterrupted one: bit-identical parameters, with
XLA's deterministic GPU ops (without them GPU reductions may sum in a different order on every
run). Each section prints its seconds; the last line is

    accelerator_check ok=<bool> resnet18_views_per_s=<float> mfu=<float>

``mfu`` is nan when the device has no published peak (every CPU). Size: ``full`` on GPU/TPU
(expected well under the 8-minute budget on one H100-class GPU, mostly compilation; not measured:
no GPU was at hand); ``small`` on the CPU (``SSLJAX_CHECK_SIZE`` overrides): batch 8 and 2 timed
steps, ResNet-18 at width 16 (the same 18 layers and code path at 1/16 of the FLOPs: on 2 cores a
full-width step takes 2 s), still in bf16 so that the CPU runs the accelerators' code path (on a
loaded 2-core machine its compile took 62 s in bf16 and 64 s in float32), the CNN at the smoke
widths (8, 16), 2 host devices so that the 1-vs-N check runs, and 60 steps in the CLI runs, which
overlap the measurements (figures there are a smoke test, not a benchmark). Compilation is most of
its time: 3 minutes on the 2-core machine under another job's load. The suite runs it
(tests/test_accelerator_check.py).
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import os
import pathlib
import sys
import tempfile
import time
import traceback

from resume_check import ResumeCheck

ROOT = pathlib.Path(__file__).resolve().parents[2]
SIZE_VAR = "SSLJAX_CHECK_SIZE"


@dataclasses.dataclass(frozen=True)
class Size:
  resnet_batches: tuple[int, ...]
  resnet_width: int
  steps: int          # timed steps per measurement (after one warm-up step)
  cnn_batch: int
  cnn_widths: tuple[int, ...] | None  # None: the quickstart's
  cpu_devices: int    # host devices on the CPU backend (0: one per core)
  overlap: bool       # CLI runs in the background while measuring


SIZES = {"full": Size((512, 1024), 64, 10, 256, None, 0, False),
         "small": Size((8,), 16, 2, 16, (8, 16), 2, True)}


def chosen_size(backend: str | None, env=os.environ) -> str:
  """``SSLJAX_CHECK_SIZE`` if set, else small on the CPU (or an unknown backend) and full elsewhere."""
  name = env.get(SIZE_VAR, "").strip()
  if name and name not in SIZES:
    raise SystemExit(f"{SIZE_VAR}={name!r} must be one of {', '.join(SIZES)}")
  return name or ("full" if backend in ("gpu", "tpu") else "small")


def expected_size() -> str:
  """The size, decided before JAX starts (host devices must be set first)."""
  from ssljax.accelerator import expected_backend
  return chosen_size(expected_backend())


def print_environment(failures: list) -> None:
  import jax

  from ssljax.accelerator import warn_if_accelerator_unused
  from ssljax.provenance import provenance
  record = provenance()
  versions = {**record["versions"], "python": record["python"]}
  for plugin in ("jax-cuda13-plugin", "jax-cuda12-plugin", "libtpu"):
    try:
      versions[plugin] = importlib.metadata.version(plugin)
    except importlib.metadata.PackageNotFoundError:
      pass
  print(f"backend={record['backend']} device_kind={record['device_kind']!r} "
        f"devices={record['device_count']} processes={record['process_count']}")
  print("versions " + " ".join(f"{k}={v}" for k, v in versions.items()))
  for d in jax.local_devices()[:1]:
    stats = getattr(d, "memory_stats", lambda: None)() or {}
    if "bytes_limit" in stats:
      print(f"device_memory_gib={stats['bytes_limit'] / 2 ** 30:.1f}")
  if warn_if_accelerator_unused():
    failures.append("an accelerator is visible but jax runs on the CPU (warning above)")


def measure_resnet18(size: Size) -> tuple[float, float]:
  """Prints one line per batch; returns (views/s, MFU) of the largest batch."""
  import throughput

  from ssljax.base_config import base_config
  default_width = base_config().encoders.resnet18.width
  views_per_s = mfu = float("nan")
  for batch in size.resnet_batches:
    r = throughput.measure("resnet18", "infonce", batch, (32, 32, 3), size.steps, "bfloat16",
                           end_to_end=False, encoder_args={"width": size.resnet_width},
                           gemm_yardstick=False)
    views_per_s, mfu = r["views_per_s"], r["mfu"]
    width = "" if size.resnet_width == default_width else f" width={size.resnet_width}"
    print(f"resnet18{width} infonce {r['dtype']} batch={batch}: views_per_s={views_per_s:.1f} "
          f"step_ms={r['step_s'] * 1e3:.1f} compile_s={r['compile_s']:.1f} "
          f"model_tflop_s={r['model_flop_s'] / 1e12:.3f} mfu={mfu:.3f} "
          f"(peak {r['peak_flop_s'] / 1e12:.0f} TFLOP/s over {r['devices']} devices)")
  return views_per_s, mfu


def measure_cnn(size: Size) -> None:
  import throughput
  r = throughput.measure("cnn", "infonce", size.cnn_batch, (28, 28, 1), size.steps, "auto",
                         cnn_widths=size.cnn_widths, end_to_end=False, gemm_yardstick=False)
  widths = f" widths={','.join(map(str, size.cnn_widths))}" if size.cnn_widths else ""
  print(f"quickstart cnn{widths} infonce {r['dtype']} batch={size.cnn_batch}: "
        f"views_per_s={r['views_per_s']:.1f} step_ms={r['step_s'] * 1e3:.1f} "
        f"compile_s={r['compile_s']:.1f} mfu={r['mfu']:.3f}")


def check_device_equivalence(failures: list) -> None:
  """Two float32 SGD steps of the smoke InfoNCE on 1 and on every device, from one initial state:
  the same global batch, so the same losses and gradient norms up to the order of float sums
  (``tests/test_device_equivalence.py`` proves it for every objective on fake CPU devices)."""
  import jax
  import numpy as np

  from ssljax.base_config import load_experiment
  from ssljax.data.sources import Dataset
  from ssljax.train import loop
  n = jax.device_count()
  if n == 1:
    print("device_equivalence skipped (1 device)")
    return
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (8 * n, 16, 16, 1), np.uint8)
  labels = rng.integers(0, 10, 8 * n).astype(np.int32)
  data = Dataset("synthetic", images, labels, images[:16], labels[:16], 10)
  histories, initial = {}, None
  for devices in (1, n):
    config = load_experiment(ROOT / "experiments" / "fmnist_infonce.py", "smoke")
    config.update(devices=devices, batch_size=2 * n, steps=2, dtype="float32")
    config.optimizer.update(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.0,
                            schedule="constant", warmup_steps=0)
    exp = loop.build_experiment(config, data)
    # "highest": GPUs compute float32 convolutions in TF32 by default, whose rounding would differ
    # with the partitioning by more than the order of sums does.
    with jax.default_matmul_precision("highest"):
      if initial is None:
        initial = jax.device_get(loop.initial_state(exp))
      histories[devices], _ = loop.run_steps(exp, 2, initial)
  worst = max(abs(float(b[k]) / float(a[k]) - 1) for a, b in zip(histories[1], histories[n])
              for k in ("main/loss", "main/grad_norm"))
  print(f"device_equivalence 1_vs_{n}: max_relative_difference={worst:.2e} (loss, grad_norm; "
        "tolerance 1e-4)")
  if not worst < 1e-4:
    failures.append(f"1 and {n} devices differ by {worst:.2e}")


def run_section(name: str, fn, failures: list, *args):
  """Runs one section and prints its seconds; a failure is reported and counted, and the others
  still run."""
  start = time.perf_counter()
  try:
    return fn(*args)
  except Exception as e:  # noqa: BLE001 - the check reports every section's failure, then goes on
    traceback.print_exc()
    failures.append(f"{name}: {type(e).__name__}: {str(e)[:300]}")
    return None
  finally:
    print(f"[{name}: {time.perf_counter() - start:.0f} s]", flush=True)


def main() -> int:
  # Before JAX starts: the CLI runs of the resume check share the GPU with this process, so neither
  # may take 75% of its memory up front (JAX's default).
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  size_name = expected_size()
  size = SIZES[size_name]
  import jax
  if size.cpu_devices:
    jax.config.update("jax_num_cpu_devices", size.cpu_devices)
  failures: list[str] = []
  actual = chosen_size(jax.default_backend())
  if actual != size_name:  # the pre-start guess was wrong: take the size of the real backend
    size_name, size = actual, SIZES[actual]
  print(f"accelerator_check size={size_name}")
  run_section("environment", print_environment, failures, failures)
  with tempfile.TemporaryDirectory(prefix="accelerator-check-") as workdir:
    resume = ResumeCheck(pathlib.Path(workdir), small=size_name == "small",
                         cpu_devices=size.cpu_devices)
    if size.overlap:
      resume.start()
    views_per_s, mfu = run_section("resnet18", measure_resnet18, failures, size) or (math.nan,) * 2
    run_section("quickstart cnn", measure_cnn, failures, size)
    run_section("device equivalence", check_device_equivalence, failures, failures)
    if not size.overlap:
      resume.start()
    run_section("pretrain + probe and kill -9 resume", resume.finish, failures, failures)
  for failure in failures:
    print(f"FAILED {failure}")
  ok = not failures
  print(f"accelerator_check ok={ok} resnet18_views_per_s={views_per_s:.1f} mfu={mfu:.4f}")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.path.insert(0, str(ROOT))
  from ssljax.host_memory import reexec_with_tuned_malloc
  reexec_with_tuned_malloc()  # as the CLI does (CPU backend only)
  sys.exit(main())
