"""VGG (Simonyan & Zisserman 2015): configurations A, B, D, E (VGG-11, -13, -16, -19).

Only 3x3 convolutions, stride 1, pad 1, each followed by ReLU ([BatchNorm before it with
``batch_norm=True``, as in torchvision's ``vgg*_bn``, which keeps the conv biases]); five 2x2/2 max
pools; then FC 4096 -> FC 4096 with dropout 0.5 on their inputs (torchvision's placement, so the
returned features are never masked; ``train=True`` then needs ``rngs={'dropout': key}``). On
224x224x3 the last pool leaves 7x7x512 and a 1000-way linear classifier on the 4096-d features gives
VGG-16 = 138,357,544 and VGG-19 = 143,667,240 parameters, the paper's figures.

Small inputs: five halvings of 28x28 would reach 0x0, so a pool is skipped once the map is already
1x1 (28 -> 14 -> 7 -> 3 -> 1 -> 1; 32 -> 16 -> 8 -> 4 -> 2 -> 1). FC6 then reads the 1x1x512 map,
so the small-input network is the familiar "CIFAR VGG": the conv stack plus a 512 -> 4096 -> 4096
head. ``fc_widths=()`` drops the FC head and returns the global average of the last map (512-d),
what SSL papers use as the VGG trunk; ``width`` scales every conv (paper: 64).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ssljax.errors import UserError
from ssljax.models.layers import Conv, max_pool
from ssljax.models.registry import register_encoder

# Convs per stage for each configuration of the paper's Table 1; stage widths are
# width * (1, 2, 4, 8, 8).
_CONFIGS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
_WIDTH_FACTORS = (1, 2, 4, 8, 8)


class VGG(nn.Module):
  depth: int = 16
  width: int = 64
  batch_norm: bool = False
  fc_widths: tuple[int, ...] = (4096, 4096)  # () = no FC head, features = mean of the last map
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.depth not in _CONFIGS:
      raise UserError(f"vgg: depth must be one of {sorted(_CONFIGS)}, got {self.depth}")
    stages = {}
    x = x.astype(self.dtype)
    for i, (convs, factor) in enumerate(zip(_CONFIGS[self.depth], _WIDTH_FACTORS)):
      for j in range(convs):
        x = Conv(self.width * factor, (3, 3), padding=1, dtype=self.dtype,
                    name=f"conv{i + 1}_{j + 1}")(x)
        if self.batch_norm:
          x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                           name=f"bn{i + 1}_{j + 1}")(x)
        x = nn.relu(x)
      if min(x.shape[1:3]) > 1:  # small inputs: stop halving at 1x1 instead of vanishing
        x = max_pool(x, (2, 2), strides=(2, 2))
      stages[f"block{i + 1}"] = x
    if not self.fc_widths:
      return jnp.mean(x, axis=(1, 2)).astype(jnp.float32), stages
    x = x.reshape(x.shape[0], -1)
    for k, features in enumerate(self.fc_widths):
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      x = nn.relu(nn.Dense(features, dtype=self.dtype, name=f"fc{k + 6}")(x))
    return x.astype(jnp.float32), stages


@register_encoder("vgg11")
class VGG11(VGG):
  depth: int = 11


@register_encoder("vgg13")
class VGG13(VGG):
  depth: int = 13


@register_encoder("vgg16")
class VGG16(VGG):
  depth: int = 16


@register_encoder("vgg19")
class VGG19(VGG):
  depth: int = 19
