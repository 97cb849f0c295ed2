"""LeNet-5 (LeCun et al. 1998): the first convolutional network that mattered.

C1 conv 5x5 x6 -> S2 2x2 subsampling -> C3 conv 5x5 x16 -> S4 2x2 subsampling -> C5/F5 FC 120 ->
F6 FC 84. ``features`` is the 84-d F6 output, so a 10-way linear classifier on top (the paper's RBF
output layer, replaced by the now-usual linear one) gives 61,706 parameters on 32x32x1 inputs.

Deliberate departures from the 1998 paper, each the one textbooks and torchvision-era ports make:
- C3 is fully connected to the six S2 maps (the paper's hand-wired partial table saved compute on
  1998 hardware; a full C3 has 2,416 parameters instead of 1,516, and is what "61,706" counts).
- Subsampling is a plain average (or max) pool without the paper's trainable coefficient and bias.
- ``activation`` is ``tanh`` (the paper's squashing function, minus its 1.7159 scale) or ``relu``.

Small inputs: the paper fed 32x32 images, digits padded from 28x28. ``first_padding="auto"`` does
that padding inside C1 ("SAME" when the input is smaller than 32x32, "VALID" otherwise), so 28x28
inputs reach S4 at exactly the paper's 5x5x16 and every parameter count matches the 32x32 network.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ssljax.errors import UserError
from ssljax.models.layers import Conv, max_pool
from ssljax.models.registry import register_encoder

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": nn.relu}
_POOLS = {"avg": nn.avg_pool, "max": max_pool}


@register_encoder("lenet5")
class LeNet5(nn.Module):
  activation: str = "tanh"   # "tanh" (paper) | "relu"
  pooling: str = "avg"       # "avg" (paper's subsampling, minus its trainable scale) | "max"
  first_padding: str = "auto"  # "auto" | "SAME" | "VALID"; auto pads C1 only below 32x32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # no BatchNorm or dropout in LeNet; kept for the encoder contract
    if self.activation not in _ACTIVATIONS or self.pooling not in _POOLS:
      raise UserError(f"lenet5: activation must be one of {sorted(_ACTIVATIONS)} and pooling one "
                      f"of {sorted(_POOLS)}; got {self.activation!r}, {self.pooling!r}")
    act, pool = _ACTIVATIONS[self.activation], _POOLS[self.pooling]
    padding = self.first_padding
    if padding == "auto":
      padding = "SAME" if min(x.shape[1:3]) < 32 else "VALID"
    stages = {}
    x = x.astype(self.dtype)
    x = act(Conv(6, (5, 5), padding=padding, dtype=self.dtype, name="c1")(x))
    stages["c1"] = x
    x = pool(x, (2, 2), strides=(2, 2))
    stages["s2"] = x
    x = act(Conv(16, (5, 5), padding="VALID", dtype=self.dtype, name="c3")(x))
    stages["c3"] = x
    x = pool(x, (2, 2), strides=(2, 2))
    stages["s4"] = x
    x = x.reshape(x.shape[0], -1)
    x = act(nn.Dense(120, dtype=self.dtype, name="f5")(x))
    x = act(nn.Dense(84, dtype=self.dtype, name="f6")(x))
    return x.astype(jnp.float32), stages
