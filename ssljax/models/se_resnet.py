"""Squeeze-and-Excitation ResNets (Hu et al. 2018): ResNet blocks that reweigh their channels.

The SE unit squeezes the residual branch's output (B, H, W, C) to a (B, C) descriptor by global
average pooling, excites it through FC C/r -> ReLU -> FC C -> sigmoid, and scales each channel by
the result before the identity is added (the paper's Figure 3, "SE-ResNet module"). Reduction
r = 16 as in the paper; both FCs have biases. On top of ResNet-50 that adds 2,530,992 parameters:
SE-ResNet-50 with a 1000-way classifier is 28,088,024 ("28.09M" in the paper's Table 1).

Everything else, including the imagenet/cifar stem choice for small inputs, is ``resnet.py``'s: the
blocks here only override its ``recalibrate`` hook, so the two families cannot drift apart.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ssljax.models.registry import register_encoder
from ssljax.models.resnet import BasicBlock, BottleneckBlock, ResNet


class SqueezeExcite(nn.Module):
  reduction: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    s = jnp.mean(x, axis=(1, 2))  # squeeze: one number per channel, the global context
    s = nn.relu(nn.Dense(max(1, channels // self.reduction), dtype=self.dtype, name="reduce")(s))
    s = nn.sigmoid(nn.Dense(channels, dtype=self.dtype, name="expand")(s))
    return x * s[:, None, None, :]


class SEBasicBlock(BasicBlock):
  reduction: int = 16

  def recalibrate(self, y):
    return SqueezeExcite(self.reduction, dtype=self.dtype, name="se")(y)


class SEBottleneckBlock(BottleneckBlock):
  reduction: int = 16

  def recalibrate(self, y):
    return SqueezeExcite(self.reduction, dtype=self.dtype, name="se")(y)


class SEResNet(ResNet):
  reduction: int = 16

  def block_class(self):
    cls = {"basic": SEBasicBlock, "bottleneck": SEBottleneckBlock}[self.block]
    return functools.partial(cls, reduction=self.reduction)


@register_encoder("se_resnet50")
class SEResNet50(SEResNet):
  stage_sizes: tuple[int, ...] = (3, 4, 6, 3)
  block: str = "bottleneck"
