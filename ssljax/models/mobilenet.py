"""MobileNet v1 (Howard et al. 2017): depthwise-separable convolutions.

Each block is a 3x3 depthwise conv (one filter per channel) -> BN -> ReLU -> 1x1 pointwise conv ->
BN -> ReLU: roughly 8-9x fewer multiply-adds than a full 3x3 conv of the same widths, which is the
paper's whole point. Layout of the paper's Table 1: a 3x3/2 conv with 32 channels, thirteen
separable blocks (64, 128/2, 128, 256/2, 256, 512/2, 5x512, 1024/2, 1024), global average pool ->
1024-d ``features``. Convs have no bias (BN's beta is the bias); ReLU as in the paper (Keras' port
uses ReLU6). With a 1000-way linear classifier on 224x224x3: 4,231,976 parameters (BN scale and
bias counted, running statistics not), Keras' "trainable params" for MobileNet 1.0-224.

``width_multiplier`` is the paper's alpha (thinner networks: 0.75, 0.5, 0.25).

Small inputs (``stem_stride=0``, auto): the paper reduces 224 -> 7 with five stride-2 layers, which
would leave a 32x32 image at 1x1 from block 12 on. Below 64x64 the first conv keeps stride 1 (the
usual CIFAR adaptation), so 32x32 and 28x28 both end at 2x2; the weights and counts are unchanged.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ssljax.models.layers import Conv
from ssljax.models.registry import register_encoder

# (pointwise output channels, depthwise stride) for the 13 separable blocks of Table 1.
_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
           (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


@register_encoder("mobilenet_v1")
class MobileNetV1(nn.Module):
  width_multiplier: float = 1.0  # the paper's alpha
  stem_stride: int = 0           # 0 = auto: 2 (paper) from 64x64 up, 1 below
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(Conv, use_bias=False, padding=1, dtype=self.dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             dtype=self.dtype)
    width = lambda c: max(1, int(c * self.width_multiplier))
    stride = self.stem_stride or (2 if min(x.shape[1:3]) >= 64 else 1)
    x = x.astype(self.dtype)
    x = nn.relu(norm(name="stem_bn")(conv(width(32), (3, 3), stride, name="stem_conv")(x)))
    # Zero-padded keys: JAX re-sorts dicts (jit outputs, tree.map), and "block10" < "block2" would
    # move the final map away from the end; "block00" is the stem conv.
    stages = {"block00": x}
    for i, (channels, strides) in enumerate(_BLOCKS):
      c_in = x.shape[-1]
      x = conv(c_in, (3, 3), strides, feature_group_count=c_in, name=f"dw{i + 1}")(x)
      x = nn.relu(norm(name=f"dw{i + 1}_bn")(x))
      x = conv(width(channels), (1, 1), padding=0, name=f"pw{i + 1}")(x)
      x = nn.relu(norm(name=f"pw{i + 1}_bn")(x))
      stages[f"block{i + 1:02d}"] = x
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32), stages
