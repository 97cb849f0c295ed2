"""ResNets (He et al. 2016): basic blocks (18, 34) and bottleneck blocks (50, 101, 152).

``stem="imagenet"``: 7x7/2 conv + 3x3/2 max pool, as in the paper. ``stem="cifar"``: one 3x3/1 conv
and no pool, so 28x28 and 32x32 inputs keep enough resolution for four stages. ``stem="auto"`` (the
default) picks by the input: the paper's stem from 64x64 up (its /4 leaves 16x16, and the four
stages 2x2; the same threshold as MobileNet's stride), the CIFAR stem below; ``stem=`` overrides.

Projection shortcuts (1x1 conv + BN) where shape changes, stride on the 3x3 conv of bottlenecks
(torchvision's "v1.5"), which leaves the parameter count of the paper unchanged.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ssljax.errors import UserError
from ssljax.models.layers import Conv, max_pool
from ssljax.models.registry import register_encoder

STEMS = ("auto", "cifar", "imagenet")
IMAGENET_STEM_MIN_SIZE = 64  # smallest side (pixels) from which stem="auto" is the paper's stem


def chosen_stem(stem: str, height: int, width: int) -> str:
  """``"cifar"`` or ``"imagenet"``: ``stem`` itself, or for ``"auto"`` the one that fits the input."""
  if stem not in STEMS:
    raise UserError(f"ResNet stem {stem!r} unknown; valid: {', '.join(STEMS)}")
  if stem != "auto":
    return stem
  return "imagenet" if min(height, width) >= IMAGENET_STEM_MIN_SIZE else "cifar"


class BasicBlock(nn.Module):
  filters: int
  strides: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(Conv, use_bias=False, dtype=self.dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             dtype=self.dtype)
    y = conv(self.filters, (3, 3), self.strides, padding=1)(x)
    y = nn.relu(norm()(y))
    y = conv(self.filters, (3, 3), padding=1)(y)
    y = norm(scale_init=nn.initializers.zeros)(y)  # zero-init last BN: blocks start as identity
    y = self.recalibrate(y)
    if x.shape != y.shape:
      x = norm()(conv(self.filters, (1, 1), self.strides, name="shortcut")(x))
    return nn.relu(x + y)

  def recalibrate(self, y):
    """Hook on the residual branch before the sum; identity here, squeeze-excite in se_resnet."""
    return y


class BottleneckBlock(nn.Module):
  filters: int
  strides: int = 1
  dtype: Any = jnp.float32
  expansion = 4

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(Conv, use_bias=False, dtype=self.dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             dtype=self.dtype)
    y = nn.relu(norm()(conv(self.filters, (1, 1))(x)))
    y = nn.relu(norm()(conv(self.filters, (3, 3), self.strides, padding=1)(y)))
    y = norm(scale_init=nn.initializers.zeros)(conv(self.filters * self.expansion, (1, 1))(y))
    y = self.recalibrate(y)
    if x.shape != y.shape:
      x = norm()(conv(self.filters * self.expansion, (1, 1), self.strides, name="shortcut")(x))
    return nn.relu(x + y)

  def recalibrate(self, y):
    return y


class ResNet(nn.Module):
  stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
  block: str = "basic"  # "basic" | "bottleneck"
  stem: str = "auto"    # "auto" | "cifar" | "imagenet" (see the module docstring)
  width: int = 64
  dtype: Any = jnp.float32

  def block_class(self):
    """The residual block for ``self.block``; variants (se_resnet) swap in their own."""
    return {"basic": BasicBlock, "bottleneck": BottleneckBlock}[self.block]

  @nn.compact
  def __call__(self, x, train: bool = False):
    block_cls = self.block_class()
    x = x.astype(self.dtype)
    stem = chosen_stem(self.stem, *x.shape[1:3])
    if stem == "imagenet":
      x = Conv(self.width, (7, 7), (2, 2), padding=3, use_bias=False, dtype=self.dtype,
                  name="stem_conv")(x)
    else:
      x = Conv(self.width, (3, 3), padding=1, use_bias=False, dtype=self.dtype,
                  name="stem_conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                     name="stem_bn")(x)
    x = nn.relu(x)
    if stem == "imagenet":
      x = max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    # "conv1" (the paper's name for the stem) sorts before "stage*": JAX rebuilds dicts in sorted
    # key order (jit outputs, tree.map), and 'last_stage' probes must still find stage3 last.
    stages = {"conv1": x}
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        strides = 2 if i > 0 and j == 0 else 1
        x = block_cls(self.width * 2**i, strides, dtype=self.dtype, name=f"stage{i}_block{j}")(
            x, train)
      stages[f"stage{i}"] = x
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32), stages


@register_encoder("resnet18")
class ResNet18(ResNet):
  stage_sizes: tuple[int, ...] = (2, 2, 2, 2)


@register_encoder("resnet34")
class ResNet34(ResNet):
  stage_sizes: tuple[int, ...] = (3, 4, 6, 3)


@register_encoder("resnet50")
class ResNet50(ResNet):
  stage_sizes: tuple[int, ...] = (3, 4, 6, 3)
  block: str = "bottleneck"


@register_encoder("resnet101")
class ResNet101(ResNet):
  stage_sizes: tuple[int, ...] = (3, 4, 23, 3)
  block: str = "bottleneck"


@register_encoder("resnet152")
class ResNet152(ResNet):
  stage_sizes: tuple[int, ...] = (3, 8, 36, 3)
  block: str = "bottleneck"
