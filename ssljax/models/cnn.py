"""The small configurable CNN: the quickstart default.

conv3x3-BN-ReLU blocks; a 2x2 max pool after the blocks listed in ``pool_after``. On 28x28 inputs the
defaults give a 7x7x128 final map; ``features`` is its global average (128-d), and ``stages`` keeps
every block's output so a probe can read the flattened final map instead (see ``probe.features``).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ssljax.models.layers import Conv, max_pool
from ssljax.models.registry import register_encoder


@register_encoder("cnn")
class SmallCNN(nn.Module):
  widths: tuple[int, ...] = (32, 64, 128, 128)
  pool_after: tuple[int, ...] = (0, 1)  # block indices followed by 2x2 max pooling
  dtype: Any = jnp.float32  # compute dtype (bf16 on accelerators); parameters stay float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    stages = {}
    x = x.astype(self.dtype)
    for i, width in enumerate(self.widths):
      x = Conv(width, (3, 3), use_bias=False, dtype=self.dtype, name=f"conv{i}")(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                       name=f"bn{i}")(x)
      x = nn.relu(x)
      if i in self.pool_after:
        x = max_pool(x, (2, 2), strides=(2, 2))
      stages[f"block{i}"] = x
    features = jnp.mean(x, axis=(1, 2))
    return features.astype(jnp.float32), stages
