"""Device memory of the compiled train step at large batches, with and without micro-batching
(``config.micro_batch_size``: gradient caching, ssljax/objectives/microbatch.py).

    python experiments/benchmarks/memory.py
    python experiments/benchmarks/memory.py --batches 256,1024,4096 --micro 0,64,256 --devices 1

Nothing runs: each step is only compiled, and XLA's buffer assignment reports what it would
allocate (``compiled.memory_analysis()``): *temp* is the step's working memory (activations kept
for the backward pass, gradients, the loss's (2B)^2 similarity matrices); *peak* adds the arguments
(state, batch) and outputs and subtracts donated buffers reused for outputs. Figures are per device
(``--devices N`` splits the batch over N host devices) and come from the CPU backend; an
accelerator's allocator differs in detail, not in how the figures scale with the batch.

What to expect: without micro-batching temp grows linearly with the batch (activations); with it,
activations are one micro-batch's, and what remains grows with the batch through the views, the
embeddings and InfoNCE's (2B)^2 logits, which gradient caching keeps global on purpose.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--config", default="experiments/fmnist_infonce.py",
                 help="experiment file[:arg] (its encoder, objective and heads)")
  p.add_argument("--batches", default="256,1024,4096", help="global batch sizes (images)")
  p.add_argument("--micro", default="0,64,256",
                 help="micro_batch_size values; 0 = the whole batch in one pass")
  p.add_argument("--input-shape", default="28,28,1", help="H,W,C")
  p.add_argument("--devices", type=int, default=1, help="CPU host devices to split the batch over")
  p.add_argument("--dtype", default="float32", help="float32 | bfloat16")
  return p.parse_args(argv)


def load_config(spec: str):
  import importlib.util
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_experiment", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def step_memory(config, shape, batch: int, micro: int) -> dict:
  """Compiles one train step for ``batch`` images and returns its memory figures in bytes."""
  import jax
  import numpy as np

  from ssljax.data.sources import Dataset
  from ssljax.train import loop, parallel

  config.batch_size, config.micro_batch_size = batch, micro
  images = np.zeros((batch, *shape), np.uint8)  # only shapes matter: nothing runs
  labels = np.zeros(batch, np.int32)
  exp = loop.build_experiment(config, Dataset("synthetic", images, labels, images[:16],
                                              labels[:16], 10))
  replicated, sharded = parallel.replicated(exp.mesh), parallel.batch_sharding(exp.mesh)
  state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                       jax.eval_shape(lambda: loop.initial_state(exp)))
  batch_spec = {"images": jax.ShapeDtypeStruct(images.shape, images.dtype, sharding=sharded),
                "labels": jax.ShapeDtypeStruct(labels.shape, labels.dtype, sharding=sharded)}
  step = loop.compiled_train_step(exp)
  start = time.perf_counter()
  m = step.lower(state, batch_spec).compile().memory_analysis()
  peak = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
          - m.alias_size_in_bytes)
  return {"temp": m.temp_size_in_bytes, "peak": peak, "arguments": m.argument_size_in_bytes,
          "compile_s": time.perf_counter() - start}


def main(argv=None):
  args = parse_args(argv)
  import jax
  jax.config.update("jax_num_cpu_devices", args.devices)
  sys.path.insert(0, os.getcwd())

  shape = tuple(int(v) for v in args.input_shape.split(","))
  batches = [int(b) for b in args.batches.split(",")]
  micros = [int(m) for m in args.micro.split(",")]
  config = load_config(args.config)
  config.devices, config.dtype, config.wandb.mode = args.devices, args.dtype, "disabled"
  config.steps = 1000
  print(f"{config.objective} / {config.encoder} at {args.input_shape}, {args.dtype}, "
        f"{args.devices} device(s); MiB per device")
  mib = lambda b: b / 2 ** 20
  header = f"{'batch':>6} {'micro_batch_size':>17} {'temp MiB':>10} {'peak MiB':>10} {'vs full':>8}"
  rows = [header, "-" * len(header)]
  for batch in batches:
    full = None
    for micro in micros:
      if micro >= batch and micro != 0:
        continue  # the same as no micro-batching
      r = step_memory(config, shape, batch, micro)
      full = full or r["peak"]
      rows.append(f"{batch:>6} {micro or 'off':>17} {mib(r['temp']):>10.1f} {mib(r['peak']):>10.1f} "
                  f"{r['peak'] / full:>8.2f}")
      print(rows[-1] + f"   (compiled in {r['compile_s']:.0f} s)", flush=True)
  print()
  print("\n".join(rows))


if __name__ == "__main__":
  main()
