"""Convolution and max pooling whose gradients are fast on XLA:CPU; stock lowerings elsewhere.

Why this file exists (measured with ``experiments/benchmarks/throughput.py --profile``): on CPU, XLA
runs a convolution's forward and input-gradient passes through a fast library kernel, but the kernel
gradient (a contraction over batch x space) goes through layout transposes and a slow path — in a
CIFAR ResNet-18 step it cost three times the forward. Strided convolutions' input gradient (an
lhs-dilated convolution) falls back to a generic loop, and max pooling's gradient
(select-and-scatter) cost more than the convolutions around it. So, on CPU only:

* the kernel gradient is a GEMM of im2col patches against the output gradient;
* a convolution that is strided, 1x1, or has few input channels is a GEMM over patches both ways;
* non-overlapping max pooling is a reshape-max whose gradient is one elementwise fusion.

The parameters (``kernel``, ``bias``) and results are those of ``flax.linen.Conv`` and
``flax.linen.max_pool``; the tests check values and gradients against them. On GPU and TPU both
layers are the stock ones (cuDNN and XLA:TPU are already fast there).
"""
from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")
_LIBRARY_MIN_CHANNELS = 16  # below this the library forward loses to a small GEMM over patches


def _on_cpu() -> bool:
  return jax.default_backend() == "cpu"


def _patches(x, kernel_hw, strides, pads):
  """im2col: (N, Ho, Wo, kh*kw*C), taps ordered (kh, kw, c) like an HWIO kernel's rows."""
  x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  n, h, w, c = x.shape
  (kh, kw), (sh, sw) = kernel_hw, strides
  ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
  taps = [lax.slice(x, (0, i, j, 0), (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c),
                    (1, sh, sw, 1))
          for i in range(kh) for j in range(kw)]
  return taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)


def _library_forward(w, strides) -> bool:
  kh, kw, cin, _ = w.shape
  return tuple(strides) == (1, 1) and kh * kw > 1 and cin >= _LIBRARY_MIN_CHANNELS


def _gemm(a, b):
  """(..., K) x (K, F) as one 2-D GEMM (XLA:CPU's fast path wants rank-2 operands)."""
  return jnp.dot(a.reshape(-1, a.shape[-1]), b).reshape(*a.shape[:-1], b.shape[-1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv2d(x, w, strides, pads):
  if _library_forward(w, strides):
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC)
  kh, kw, cin, cout = w.shape
  return _gemm(_patches(x, (kh, kw), strides, pads), w.reshape(kh * kw * cin, cout))


def _conv2d_fwd(x, w, strides, pads):
  return _conv2d(x, w, strides, pads), (x, w)


def _conv2d_bwd(strides, pads, residuals, g):
  x, w = residuals
  kh, kw, cin, cout = w.shape
  patches, patches_vjp = jax.vjp(lambda x: _patches(x, (kh, kw), strides, pads), x)
  # Kernel gradient: patches^T @ g, contracting batch x space (a "TN" GEMM, no transposes).
  dw = lax.dot_general(patches.reshape(-1, kh * kw * cin), g.reshape(-1, cout),
                       (((0,), (0,)), ((), ()))).reshape(w.shape)
  if _library_forward(w, strides):
    _, conv_vjp = jax.vjp(
        lambda x: lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC), x)
    (dx,) = conv_vjp(g)
  else:
    (dx,) = patches_vjp(_gemm(g, w.reshape(kh * kw * cin, cout).T))
  return dx.astype(x.dtype), dw.astype(w.dtype)


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
  """Drop-in for ``lax.conv_general_dilated``: the CPU GEMM path for plain 2-D NHWC convolutions."""
  plain = (_on_cpu() and lhs.ndim == 4 and feature_group_count == 1 and batch_group_count == 1
           and all(d == 1 for d in (lhs_dilation or (1, 1)))
           and all(d == 1 for d in (rhs_dilation or (1, 1)))
           and preferred_element_type is None
           and lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
           == lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers))
  if not plain:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                    dimension_numbers, feature_group_count, batch_group_count,
                                    precision, preferred_element_type)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  return _conv2d(lhs, rhs, tuple(window_strides), tuple(tuple(p) for p in padding))


# ``nn.Conv`` with the CPU-fast convolution; same parameters, same names ("Conv_0", ...).
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)


def _tiles(x, window):
  n, h, w, c = x.shape
  return x.reshape(n, h // window[0], window[0], w // window[1], window[1], c)


def _index_dtype(taps: int):
  return jnp.int8 if taps <= 127 else jnp.int32  # a byte per output for the usual 2x2 / 3x3


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tile_max(x, window):
  return _tiles(x, window).max(axis=(2, 4))


def _tile_max_fwd(x, window):
  # The residual is which tap won (first maximum in row-major order, as select-and-scatter picks),
  # not x: comparing a recomputed x with the saved maximum could miss by a rounding and drop the
  # gradient. Ties (constant background after BN + ReLU) are common, so the rule matters.
  tiles = _tiles(x, window)
  n, ho, kh, wo, kw, c = tiles.shape
  taps = jnp.transpose(tiles, (0, 1, 3, 5, 2, 4)).reshape(n, ho, wo, c, kh * kw)
  return tiles.max(axis=(2, 4)), jnp.argmax(taps, axis=-1).astype(_index_dtype(kh * kw))


def _tile_max_bwd(window, winner, g):
  (kh, kw), (n, ho, wo, c) = window, g.shape
  onehot = winner[..., None] == jnp.arange(kh * kw, dtype=winner.dtype)
  dx = jnp.where(onehot, g[..., None], jnp.zeros((), g.dtype)).reshape(n, ho, wo, c, kh, kw)
  return (jnp.transpose(dx, (0, 1, 4, 2, 5, 3)).reshape(n, ho * kh, wo * kw, c),)


_tile_max.defvjp(_tile_max_fwd, _tile_max_bwd)


def max_pool(x, window_shape: Sequence[int], strides: Sequence[int] | None = None,
             padding: str | Sequence[tuple[int, int]] = "VALID"):
  """``nn.max_pool``; on CPU, non-overlapping VALID windows (the small CNN's, VGG's) take a
  reshape-max whose gradient is one elementwise fusion instead of a select-and-scatter."""
  window_shape = tuple(window_shape)
  strides = tuple(strides or (1,) * len(window_shape))
  tiled = (_on_cpu() and x.ndim == 4 and window_shape == strides and len(window_shape) == 2
           and (padding == "VALID" or all(tuple(p) == (0, 0) for p in padding)))
  if not tiled:
    return nn.max_pool(x, window_shape, strides, padding)
  (kh, kw), (h, w) = window_shape, x.shape[1:3]
  return _tile_max(x[:, :h - h % kh, :w - w % kw], window_shape)
