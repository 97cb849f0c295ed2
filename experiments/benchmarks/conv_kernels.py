"""Convolution kernel rates, XLA:CPU against PyTorch, for the layer shapes our encoders use.

    python experiments/benchmarks/conv_kernels.py [--batch 256] [--repeats 7]

Why: a train step can run no faster than its convolutions, so this separates "our step wastes time
around the kernels" from "the kernels themselves are slower". For each 3x3 stride-1 layer of the
quickstart CNN and of the CIFAR ResNet-18 it prints the median GFLOP/s of the forward pass of:
XLA:CPU's convolution on one device (what ``ssljax.models.layers.Conv`` runs forward through
``ssljax.models.cpu_kernels``), the same as an im2col GEMM (XLA's matrix-product path), and
PyTorch eager (2 threads) in its default NCHW layout and channels-last. All in one process,
interleaved, on the same inputs.
Needs the 'bench' extra for PyTorch: pip install -e '.[bench]'.
"""
from __future__ import annotations

import argparse
import os

from timing import median_seconds

# (name, spatial size, input channels, output channels)
LAYERS = (
    ("cnn stage 1 (14x14, 32->64)", 14, 32, 64),
    ("cnn stage 3 (7x7, 128->256)", 7, 128, 256),
    ("resnet18 stage 1 (32x32, 64->64)", 32, 64, 64),
    ("resnet18 stage 2 (16x16, 128->128)", 16, 128, 128),
    ("resnet18 stage 3 (8x8, 256->256)", 8, 256, 256),
)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch", type=int, default=256, help="images per call (an InfoNCE step's views)")
  p.add_argument("--repeats", type=int, default=7)
  args = p.parse_args(argv)

  import jax
  import numpy as np
  from jax import lax

  from ssljax.models.cpu_kernels import gemm, patches
  try:
    import torch
  except ImportError:
    torch = None
    print("PyTorch columns skipped; install with: pip install -e '.[bench]'")
  else:
    torch.set_num_threads(os.cpu_count() or 1)

  conv = jax.jit(lambda x, w: lax.conv_general_dilated(
      x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")))
  im2col = jax.jit(lambda x, w: gemm(patches(x, (3, 3), (1, 1), ((1, 1), (1, 1))),
                                    w.reshape(-1, w.shape[-1])))
  rng = np.random.default_rng(0)
  print(f"forward GFLOP/s, batch {args.batch}, median of {args.repeats}, {jax.devices()[0].platform}"
        f" (1 device) vs PyTorch ({torch.get_num_threads() if torch else 0} threads)")
  print(f"{'layer':38s} {'xla conv':>9s} {'xla gemm':>9s} {'torch':>9s} {'torch cl':>9s}")
  for name, size, cin, cout in LAYERS:
    x = rng.standard_normal((args.batch, size, size, cin), np.float32)
    w = (rng.standard_normal((3, 3, cin, cout)) / np.sqrt(9 * cin)).astype(np.float32)
    gflop = 2 * args.batch * size * size * 9 * cin * cout / 1e9
    xj, wj = jax.device_put(x), jax.device_put(w)
    rates = [gflop / median_seconds(lambda f=f: jax.block_until_ready(f(xj, wj)), args.repeats)
             for f in (conv, im2col)]
    if torch is not None:
      xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
      wt = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous()
      xcl = xt.to(memory_format=torch.channels_last)
      with torch.no_grad():
        for xin in (xt, xcl):
          rates.append(gflop / median_seconds(
              lambda xin=xin: torch.nn.functional.conv2d(xin, wt, padding=1), args.repeats))
    print(f"{name:38s} " + " ".join(f"{r:9.0f}" for r in rates))


if __name__ == "__main__":
  from ssljax.host_memory import reexec_with_tuned_malloc
  reexec_with_tuned_malloc()  # as the training CLI does
  main()
