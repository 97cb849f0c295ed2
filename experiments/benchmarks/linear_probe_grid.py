"""What training the probe's lr/wd grid side by side saves: the whole grid in one
``fit_linear_grid`` call (shared minibatches) against one ``fit_linear`` call per setting, on
random features of the quickstart's shapes (the pooled 256-d output and the flattened 7x7x256
map), alternating the two in one process.

    python experiments/benchmarks/linear_probe_grid.py [--rows 20000] [--epochs 3] [--repeats 3]

Prints the median seconds of each and the ratio; the last line is
``linear_probe_grid dim=D sequential_s=... grid_s=... speedup=...`` per feature size.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments" / "benchmarks"))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--rows", type=int, default=20000)
  p.add_argument("--dims", default="256,12544")
  p.add_argument("--epochs", type=int, default=3)
  p.add_argument("--repeats", type=int, default=3)
  args = p.parse_args(argv)
  import jax
  import jax.numpy as jnp
  import numpy as np
  from timing import median_seconds
  from ssljax.base_config import base_config
  from ssljax.evaluate.linear_probe import feature_moments, fit_linear, fit_linear_grid
  cfg = base_config().probe
  settings = [(lr, wd) for lr in cfg.lrs for wd in cfg.weight_decays]
  lrs, wds = jnp.asarray([s[0] for s in settings]), jnp.asarray([s[1] for s in settings])
  statics = dict(num_classes=10, epochs=args.epochs, batch_size=int(cfg.batch_size))
  rng = np.random.default_rng(0)
  lines = []
  for dim in map(int, args.dims.split(",")):
    x = rng.standard_normal((args.rows, dim), dtype=np.float32)
    y = rng.integers(0, 10, args.rows).astype(np.int32)
    rows = np.arange(args.rows)
    mean, scale = feature_moments(x, rows)
    dx, dy, drows = jnp.asarray(x), jnp.asarray(y), jnp.asarray(rows)
    sequential = lambda: [jax.block_until_ready(fit_linear(dx, dy, drows, mean, scale, lr, wd, 0,
                                                           **statics)) for lr, wd in settings]
    grid = lambda: jax.block_until_ready(fit_linear_grid(dx, dy, drows, mean, scale, lrs, wds, 0,
                                                         **statics))
    # Alternate so that load from elsewhere falls on both alike.
    seq_times, grid_times = [], []
    for _ in range(args.repeats):
      seq_times.append(median_seconds(sequential, repeats=1, warmup=0 if seq_times else 1))
      grid_times.append(median_seconds(grid, repeats=1, warmup=0 if grid_times else 1))
    seq_s, grid_s = float(np.median(seq_times)), float(np.median(grid_times))
    print(f"{dim}-d, {args.rows} rows, {len(settings)} settings, {args.epochs} epochs: "
          f"one call per setting {seq_s:.2f} s, the grid in one call {grid_s:.2f} s", flush=True)
    lines.append(f"linear_probe_grid dim={dim} sequential_s={seq_s:.3f} grid_s={grid_s:.3f} "
                 f"speedup={seq_s / grid_s:.2f}")
    del dx, x
  print("\n".join(lines))


if __name__ == "__main__":
  main()
