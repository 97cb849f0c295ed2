"""GoogLeNet / Inception v1 (Szegedy et al. 2015), with both forms of the Inception module.

``inception="reduced"`` is the network of the paper's Table 1: every module runs parallel 1x1,
1x1->3x3, 1x1->5x5 and 3x3-max-pool->1x1 branches and concatenates them; nine modules (3a..5b),
global average pool -> 1024-d ``features``: 5,973,552 parameters, 6,998,552 with a 1000-way
classifier (no auxiliary heads). ``inception="naive"`` is the paper's Figure 2(a) strawman: the same
1x1/3x3/5x5 widths with no 1x1 reductions, and the pool branch passes all its input channels
through, so channels and cost grow module after module (4,944 channels out of 5b, 97.5M parameters
with the classifier). It is here to measure why the reductions exist, not to train on ImageNet.

Kept from the paper: 5x5 convolutions (torchvision's port uses 3x3 there), conv biases, ReLU after
every conv, LRN in the stem (``lrn``). Left out: the auxiliary classifiers (training-time heads of
an objective, not part of an encoder) and the 40% dropout before the classifier (it belongs to the
classifier, which an objective or probe owns). ``batch_norm=True`` gives the BN-Inception flavour
(BN before each ReLU, conv biases dropped).

Small inputs (``stem="auto"``): below 64x64 the stem's 7x7/2 conv and its two 3x3/2 pools (an 8x
reduction) are replaced by 3x3/1 convs without pooling, so a 28x28 input reaches module 3a at 28x28,
the very resolution 3a has on a 224x224 image; 32x32 reaches it at 32x32. ``width_multiplier``
scales every channel count (for tests and small budgets).
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ssljax.errors import UserError
from ssljax.models.layers import Conv, local_response_norm, max_pool
from ssljax.models.registry import register_encoder

# Table 1: name -> (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj); None = max pool 3x3/2.
_TABLE = (("3a", (64, 96, 128, 16, 32, 32)), ("3b", (128, 128, 192, 32, 96, 64)), ("pool3", None),
          ("4a", (192, 96, 208, 16, 48, 64)), ("4b", (160, 112, 224, 24, 64, 64)),
          ("4c", (128, 128, 256, 24, 64, 64)), ("4d", (112, 144, 288, 32, 64, 64)),
          ("4e", (256, 160, 320, 32, 128, 128)), ("pool4", None),
          ("5a", (256, 160, 320, 32, 128, 128)), ("5b", (384, 192, 384, 48, 128, 128)))


class ConvReLU(nn.Module):
  """conv -> [BN] -> ReLU: the unit every GoogLeNet layer is made of."""
  features: int
  kernel: int
  strides: int = 1
  batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = Conv(self.features, (self.kernel, self.kernel), self.strides, padding="SAME",
                use_bias=not self.batch_norm, dtype=self.dtype, name="conv")(x)
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                       name="bn")(x)
    return nn.relu(x)


class Inception(nn.Module):
  """One Inception module; the reduce/proj widths are ignored in the naive form."""
  c1: int
  c3_reduce: int
  c3: int
  c5_reduce: int
  c5: int
  pool_proj: int
  naive: bool = False
  batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    unit = functools.partial(ConvReLU, batch_norm=self.batch_norm, dtype=self.dtype)
    pooled = max_pool(x, (3, 3), strides=(1, 1), padding="SAME")
    if self.naive:
      b3_in = b5_in = x
      b_pool = pooled  # passes all input channels through: the cost the reductions remove
    else:
      b3_in = unit(self.c3_reduce, 1, name="b3_reduce")(x, train)
      b5_in = unit(self.c5_reduce, 1, name="b5_reduce")(x, train)
      b_pool = unit(self.pool_proj, 1, name="pool_proj")(pooled, train)
    return jnp.concatenate([
        unit(self.c1, 1, name="b1")(x, train),
        unit(self.c3, 3, name="b3")(b3_in, train),
        unit(self.c5, 5, name="b5")(b5_in, train),
        b_pool], axis=-1)


@register_encoder("googlenet")
class GoogLeNet(nn.Module):
  inception: str = "reduced"    # "reduced" (Table 1) | "naive" (Figure 2a)
  stem: str = "auto"            # "auto" | "imagenet" (7x7/2 + pools, 8x down) | "small" (no down)
  width_multiplier: float = 1.0
  batch_norm: bool = False
  lrn: bool = True              # LRN in the stem, as in the paper; parameter-free
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.inception not in ("reduced", "naive"):
      raise UserError(f"googlenet: inception must be 'reduced' or 'naive', got {self.inception!r}")
    stem = self.stem
    if stem == "auto":
      stem = "imagenet" if min(x.shape[1:3]) >= 64 else "small"
    if stem not in ("imagenet", "small"):
      raise UserError(f"googlenet: stem must be 'auto', 'imagenet' or 'small', got {self.stem!r}")
    width = lambda c: max(1, int(c * self.width_multiplier))
    unit = functools.partial(ConvReLU, batch_norm=self.batch_norm, dtype=self.dtype)
    norm = local_response_norm if self.lrn else (lambda y: y)
    pool = lambda y: max_pool(y, (3, 3), strides=(2, 2), padding="SAME")
    stages = {}
    x = x.astype(self.dtype)
    if stem == "imagenet":
      x = norm(pool(unit(width(64), 7, strides=2, name="conv1")(x, train)))
      x = unit(width(64), 1, name="conv2_reduce")(x, train)
      x = pool(norm(unit(width(192), 3, name="conv2")(x, train)))
    else:
      x = norm(unit(width(64), 3, name="conv1")(x, train))
      x = unit(width(64), 1, name="conv2_reduce")(x, train)
      x = norm(unit(width(192), 3, name="conv2")(x, train))
    stages["conv2"] = x  # the paper's name for the stem's last layer; sorts before "inception*"
    for name, row in _TABLE:
      if row is None:
        x = pool(x)
        continue
      x = Inception(*(width(c) for c in row), naive=self.inception == "naive",
                    batch_norm=self.batch_norm, dtype=self.dtype, name=f"inception{name}")(x, train)
      stages[f"inception{name}"] = x
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32), stages
