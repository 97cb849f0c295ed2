"""The layers every encoder builds from: ``Conv``, ``max_pool`` and local response normalisation.

``Conv`` and ``max_pool`` have the parameters (``kernel``, ``bias``) and results of
``flax.linen.Conv`` and ``flax.linen.max_pool``; where the CPU kernels are on
(``ssljax.models.cpu_kernels``: by default on the CPU backend only) plain 2-D convolutions and
non-overlapping max pools go through those kernels, elsewhere through the stock ops (cuDNN and
XLA:TPU are already fast). The tests check values, gradients and forward-mode derivatives against
flax's.
"""
from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ssljax.models import cpu_kernels


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
  """Drop-in for ``lax.conv_general_dilated``: the CPU kernel for plain 2-D NHWC convolutions."""
  plain = (lhs.ndim == 4 and feature_group_count == 1 and batch_group_count == 1
           and all(d == 1 for d in (lhs_dilation or (1, 1)))
           and all(d == 1 for d in (rhs_dilation or (1, 1)))
           and preferred_element_type is None
           and lax.conv_dimension_numbers(lhs.shape, rhs.shape, cpu_kernels.NHWC)
           == lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers))
  if not (plain and cpu_kernels.cpu_kernels_enabled()):
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                    dimension_numbers, feature_group_count, batch_group_count,
                                    precision, preferred_element_type)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  return cpu_kernels.conv2d(lhs, rhs, tuple(window_strides), tuple(tuple(p) for p in padding))


# ``nn.Conv`` through the convolution above; same parameters, same names ("Conv_0", ...).
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)


def max_pool(x, window_shape: Sequence[int], strides: Sequence[int] | None = None,
             padding: str | Sequence[tuple[int, int]] = "VALID"):
  """``nn.max_pool``; with the CPU kernels, non-overlapping VALID windows (the small CNN's, VGG's)
  take a reshape-max whose gradient is one elementwise fusion instead of a select-and-scatter."""
  window_shape = tuple(window_shape)
  strides = tuple(strides or (1,) * len(window_shape))
  tiled = (x.ndim == 4 and window_shape == strides and len(window_shape) == 2
           and (padding == "VALID" or all(tuple(p) == (0, 0) for p in padding)))
  if not (tiled and cpu_kernels.cpu_kernels_enabled()):
    return nn.max_pool(x, window_shape, strides, padding)
  (kh, kw), (h, w) = window_shape, x.shape[1:3]
  return cpu_kernels.tile_max(x[:, :h - h % kh, :w - w % kw], window_shape)


def local_response_norm(x, size: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75):
  """Across-channel LRN of the AlexNet paper: x / (k + alpha * sum of x^2 over `size` channels)^beta.

  The paper's alpha multiplies the plain sum (Caffe divides it by `size`); GoogLeNet reuses this.
  """
  half = size // 2
  sq = jax.lax.reduce_window(jnp.square(x), 0.0, jax.lax.add, (1, 1, 1, size), (1, 1, 1, 1),
                             ((0, 0), (0, 0), (0, 0), (half, half)))
  return x / jnp.power(k + alpha * sq, beta).astype(x.dtype)
