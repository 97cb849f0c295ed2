"""Small heads that objectives put around an encoder."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLPProjector(nn.Module):
  """SimCLR's projector: Dense-BN-ReLU for every hidden width, then a plain Dense output.
  ``output_bn``: the output Dense has no bias and is followed by a BatchNorm without scale or
  offset (SimSiam's and MoCo v3's projectors)."""
  dims: Sequence[int] = (512, 128)
  output_bn: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    for width in self.dims[:-1]:
      x = nn.Dense(width, use_bias=False, dtype=self.dtype)(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x)
      x = nn.relu(x)
    x = nn.Dense(self.dims[-1], use_bias=not self.output_bn, dtype=self.dtype)(x)
    if self.output_bn:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, use_scale=False,
                       use_bias=False, dtype=self.dtype)(x)
    return x.astype(jnp.float32)


class DINOProjector(nn.Module):
  """DINO's head MLP (Caron et al. 2021, the authors' ``DINOHead``): Dense(-BN)-GELU for every
  hidden width, then a Dense to the bottleneck; weights truncated normal with std 0.02, biases
  zero, as theirs. ``use_bn``: their ``use_bn_in_head``."""
  dims: Sequence[int] = (2048, 2048, 256)
  use_bn: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    dense = lambda width, bias=True: nn.Dense(width, use_bias=bias, dtype=self.dtype,
                                              kernel_init=nn.initializers.truncated_normal(0.02))
    for width in self.dims[:-1]:
      x = dense(width, bias=not self.use_bn)(x)  # a bias before BatchNorm would cancel out
      if self.use_bn:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x)
      x = nn.gelu(x, approximate=False)
    return dense(self.dims[-1])(x).astype(jnp.float32)


class Prototypes(nn.Module):
  """DINO's last layer: the L2-normalised input times a weight-normalised linear map to
  ``num_prototypes`` outputs, each prototype's norm fixed at 1 (the authors' ``norm_last_layer``,
  which they find stabilises training), so every logit is a cosine in [-1, 1]."""
  num_prototypes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.astype(jnp.float32)
    v = self.param("prototypes", nn.initializers.lecun_normal(), (x.shape[-1], self.num_prototypes))
    x = x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))
    return x @ (v * jax.lax.rsqrt(jnp.maximum(jnp.sum(v * v, axis=0, keepdims=True), 1e-12)))


class LinearHead(nn.Module):
  """A linear classifier (the online probe and supervised heads)."""
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(self.num_classes)(x.astype(jnp.float32))
