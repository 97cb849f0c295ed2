"""AlexNet (Krizhevsky, Sutskever & Hinton 2012), ungrouped, as it is taught.

On 227x227x3: CONV1 96 11x11/4 -> 55x55x96 (34,944 params) -> ReLU -> [LRN] -> POOL1 3x3/2 ->
27x27x96 -> CONV2 256 5x5 pad 2 -> [LRN] -> POOL2 -> 13x13x256 -> CONV3 384, CONV4 384, CONV5 256,
all 3x3 pad 1 -> POOL5 -> 6x6x256 -> FC6 4096 -> FC7 4096 = ``features``. A 1000-way linear
classifier on top gives 62,378,344 parameters: the two-GPU column split of the paper (which halves
CONV2/4/5's inputs) is dropped, as in every single-device port.

Choices worth knowing:
- Dropout 0.5 sits on the inputs of FC6 and FC7 (torchvision's placement): still "dropout in the
  first two fully-connected layers", but the returned features are never masked, so objectives
  see the representation itself. With ``train=True`` it needs ``rngs={'dropout': key}``.
- LRN (k=2, n=5, alpha=1e-4, beta=0.75, after the ReLUs of CONV1 and CONV2) is on by default as in
  the paper; it has no parameters, so ``lrn=False`` changes no count.
- ``fc_width=0`` drops FC6/FC7 and returns the global average of POOL5 (the usual SSL trunk).

Small inputs (``stem="auto"``): the stride-4 11x11 CONV1 followed by three 3x3/2 pools needs at
least 67x67 pixels (a 15x15 CONV1 map). Below that, CONV1 becomes 3x3 stride 1 pad 1 (every later
layer unchanged), so 32x32 inputs reach POOL5 at 3x3x256 and 28x28 at 2x2x256; FC6 is then sized
by that smaller map. ``stem="imagenet"`` / ``"small"`` force either.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ssljax.errors import UserError
from ssljax.models.layers import Conv, local_response_norm, max_pool
from ssljax.models.registry import register_encoder

# Smallest side the paper's stem survives: CONV1 must leave 15x15 for three 3x3/2 VALID pools.
MIN_IMAGENET_SIDE = 67


def _pool(x):
  return max_pool(x, (3, 3), strides=(2, 2))  # overlapping pooling, VALID like the paper


@register_encoder("alexnet")
class AlexNet(nn.Module):
  conv_widths: tuple[int, ...] = (96, 256, 384, 384, 256)  # CONV1..CONV5 channels
  fc_width: int = 4096       # FC6/FC7 width; 0 = no FC layers, features = mean of POOL5
  dropout_rate: float = 0.5
  lrn: bool = True
  stem: str = "auto"         # "auto" | "imagenet" (11x11/4) | "small" (3x3/1)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if len(self.conv_widths) != 5:
      raise UserError(f"alexnet: conv_widths needs 5 entries (CONV1..CONV5), got {self.conv_widths}")
    side = min(x.shape[1:3])
    stem = self.stem
    if stem == "auto":
      stem = "imagenet" if side >= MIN_IMAGENET_SIDE else "small"
    if stem not in ("imagenet", "small"):
      raise UserError(f"alexnet: stem must be 'auto', 'imagenet' or 'small', got {self.stem!r}")
    if stem == "imagenet" and side < MIN_IMAGENET_SIDE:
      raise UserError(f"alexnet: the imagenet stem needs inputs of at least {MIN_IMAGENET_SIDE}"
                      f"x{MIN_IMAGENET_SIDE}, got {x.shape[1]}x{x.shape[2]}; use stem='small'")
    conv = lambda i, k, **kw: Conv(self.conv_widths[i], (k, k), dtype=self.dtype,
                                      name=f"conv{i + 1}", **kw)
    norm = local_response_norm if self.lrn else (lambda y: y)
    stages = {}
    x = x.astype(self.dtype)
    if stem == "imagenet":
      x = conv(0, 11, strides=(4, 4), padding="VALID")(x)
    else:
      x = conv(0, 3, padding=1)(x)
    x = norm(nn.relu(x))
    stages["conv1"] = x
    x = stages["pool1"] = _pool(x)
    x = stages["conv2"] = norm(nn.relu(conv(1, 5, padding=2)(x)))
    x = stages["pool2"] = _pool(x)
    x = stages["conv3"] = nn.relu(conv(2, 3, padding=1)(x))
    x = stages["conv4"] = nn.relu(conv(3, 3, padding=1)(x))
    x = stages["conv5"] = nn.relu(conv(4, 3, padding=1)(x))
    x = stages["pool5"] = _pool(x)
    if not self.fc_width:
      return jnp.mean(x, axis=(1, 2)).astype(jnp.float32), stages
    x = x.reshape(x.shape[0], -1)
    for name in ("fc6", "fc7"):
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      x = nn.relu(nn.Dense(self.fc_width, dtype=self.dtype, name=name)(x))
    return x.astype(jnp.float32), stages
