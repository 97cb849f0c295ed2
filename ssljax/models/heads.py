"""Small heads that objectives put around an encoder."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLPProjector(nn.Module):
  """SimCLR's projector: Dense-BN-ReLU for every hidden width, then a plain Dense output."""
  dims: Sequence[int] = (512, 128)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    for width in self.dims[:-1]:
      x = nn.Dense(width, use_bias=False, dtype=self.dtype)(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x)
      x = nn.relu(x)
    return nn.Dense(self.dims[-1], dtype=self.dtype)(x).astype(jnp.float32)


class LinearHead(nn.Module):
  """A linear classifier (the online probe and supervised heads)."""
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(self.num_classes)(x.astype(jnp.float32))
