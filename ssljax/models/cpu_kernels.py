"""Convolution and max-pooling kernels whose gradients are fast on XLA:CPU, and the switch that
decides whether the shared layers (``ssljax.models.layers``) use them.

Why this file exists (measured with ``experiments/benchmarks/throughput.py --profile``): on CPU, XLA
runs a convolution's forward and input-gradient passes through a fast library kernel, but the kernel
gradient (a contraction over batch x space) goes through layout transposes and a slow path — in a
CIFAR ResNet-18 step it cost three times the forward. Strided convolutions' input gradient (an
lhs-dilated convolution) falls back to a generic loop, and max pooling's gradient
(select-and-scatter) cost more than the convolutions around it. So, on CPU:

* the kernel gradient is a GEMM of im2col patches against the output gradient;
* a convolution that is strided, 1x1, or has few input channels is a GEMM over patches both ways;
* non-overlapping max pooling is a reshape-max whose gradient is one elementwise fusion.

Both kernels are ``jax.custom_jvp`` rules whose tangent is linear and written in those fast
operations, so forward mode (``jax.jvp``) works, and reverse mode is JAX's transpose of the same
tangent: the patches GEMM transposes to the patches^T @ g kernel gradient, the tile gather to a
one-hot scatter. The patches of the kernel tangent sit under ``jax.checkpoint``: the backward pass
recomputes them from the saved input instead of keeping kh*kw copies of every activation.

The switch: :func:`cpu_kernels_enabled` is on when JAX's default backend is the CPU, unless
``SSLJAX_CPU_KERNELS=0`` (or ``=1`` to force it on elsewhere) or :func:`use_cpu_kernels` says
otherwise. It is read when a function is traced: code already jitted keeps what it was traced with.
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Iterator

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from ssljax.errors import UserError

NHWC = ("NHWC", "HWIO", "NHWC")
_LIBRARY_MIN_CHANNELS = 16  # below this the library forward loses to a small GEMM over patches
ENV_VAR = "SSLJAX_CPU_KERNELS"
_override: list[bool] = []  # innermost use_cpu_kernels(...) last


def cpu_kernels_enabled() -> bool:
  """Whether the layers take these kernels: ``use_cpu_kernels``, else ``SSLJAX_CPU_KERNELS``, else
  whether JAX runs on the CPU."""
  if _override:
    return _override[-1]
  setting = os.environ.get(ENV_VAR, "").strip()
  if setting in ("0", "1"):
    return setting == "1"
  if setting:
    raise UserError(f"{ENV_VAR}={setting!r} must be 0 (stock XLA layers) or 1 (CPU kernels); "
                    "unset it for the default (on only on the CPU backend)")
  return jax.default_backend() == "cpu"


@contextlib.contextmanager
def use_cpu_kernels(enabled: bool) -> Iterator[None]:
  """Within the block, functions traced use the CPU kernels (``True``) or stock XLA ops."""
  _override.append(bool(enabled))
  try:
    yield
  finally:
    _override.pop()


def patches(x, kernel_hw, strides, pads):
  """im2col: (N, Ho, Wo, kh*kw*C), taps ordered (kh, kw, c) like an HWIO kernel's rows."""
  x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  n, h, w, c = x.shape
  (kh, kw), (sh, sw) = kernel_hw, strides
  ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
  taps = [lax.slice(x, (0, i, j, 0), (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c),
                    (1, sh, sw, 1))
          for i in range(kh) for j in range(kw)]
  return taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)


def gemm(a, b):
  """(..., K) x (K, F) as one 2-D GEMM (XLA:CPU's fast path wants rank-2 operands)."""
  return jnp.dot(a.reshape(-1, a.shape[-1]), b).reshape(*a.shape[:-1], b.shape[-1])


def _library_forward(w, strides) -> bool:
  kh, kw, cin, _ = w.shape
  return tuple(strides) == (1, 1) and kh * kw > 1 and cin >= _LIBRARY_MIN_CHANNELS


def _conv_forward(x, w, strides, pads):
  """The forward pass, linear in ``x``: the library kernel where it is fast, else patches GEMM."""
  if _library_forward(w, strides):
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=NHWC)
  kh, kw, cin, cout = w.shape
  return gemm(patches(x, (kh, kw), strides, pads), w.reshape(kh * kw * cin, cout))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def conv2d(x, w, strides, pads):
  """A plain NHWC/HWIO 2-D convolution (``pads``: explicit ((top, bottom), (left, right)))."""
  return _conv_forward(x, w, strides, pads)


@functools.partial(conv2d.defjvp, symbolic_zeros=True)
def _conv2d_jvp(strides, pads, primals, tangents):
  x, w = primals
  dx, dw = tangents
  out = _conv_forward(x, w, strides, pads)
  tangent = jnp.zeros_like(out)
  if not isinstance(dx, SymbolicZero):  # e.g. the images into the stem: nothing to compute
    tangent = tangent + _conv_forward(dx, w, strides, pads)
  if not isinstance(dw, SymbolicZero):
    kh, kw, cin, cout = w.shape
    # Transposed, this is patches^T @ g: a "TN" GEMM contracting batch x space, no transposes.
    kernel_tangent = jax.checkpoint(
        lambda x, dw: gemm(patches(x, (kh, kw), strides, pads), dw.reshape(kh * kw * cin, cout)))
    tangent = tangent + kernel_tangent(x, dw)
  return out, tangent.astype(out.dtype)


def _tiles(x, window):
  n, h, w, c = x.shape
  return x.reshape(n, h // window[0], window[0], w // window[1], window[1], c)


def _taps(x, window):
  """(N, Ho, Wo, C, kh*kw): each output's window, taps in row-major order."""
  tiles = _tiles(x, window)
  n, ho, kh, wo, kw, c = tiles.shape
  return jnp.transpose(tiles, (0, 1, 3, 5, 2, 4)).reshape(n, ho, wo, c, kh * kw)


def _index_dtype(taps: int):
  return jnp.int8 if taps <= 127 else jnp.int32  # a byte per output for the usual 2x2 / 3x3


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def tile_max(x, window):
  """Max over non-overlapping ``window`` tiles of x (N, H, W, C), H and W multiples of the window."""
  return _tiles(x, window).max(axis=(2, 4))


@tile_max.defjvp
def _tile_max_jvp(window, primals, tangents):
  (x,), (dx,) = primals, tangents
  # The tangent follows the tap that won (first maximum in row-major order, as select-and-scatter
  # picks), an int8 index rather than a comparison of x with the maximum: a recomputed x could miss
  # it by a rounding and drop the gradient. Ties (constant background after BN + ReLU) are common.
  kh, kw = window
  winner = jnp.argmax(_taps(x, window), axis=-1).astype(_index_dtype(kh * kw))
  onehot = winner[..., None] == jnp.arange(kh * kw, dtype=winner.dtype)
  tangent = jnp.sum(jnp.where(onehot, _taps(dx, window), jnp.zeros((), dx.dtype)), axis=-1)
  return tile_max(x, window), tangent
