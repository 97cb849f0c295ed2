"""The multi-layer perceptron of the autoencoder lectures: flatten -> hidden layers -> code.

Hinton & Salakhutdinov (2006) encode 28x28 digits as 784 -> 1000 -> 500 -> 250 -> 30: logistic
hidden units and a linear 30-d code layer, which is what ``features`` returns here (the code is
linear so it can take any value, and so that a linear probe or decoder sees it unsquashed). Every
fully-connected layer has a bias.

``activation`` defaults to ``relu`` rather than the paper's ``sigmoid``: a deep sigmoid stack
trained from scratch with SGD learns slowly (the 2006 paper needed RBM pretraining to train it),
and objectives here train end to end. ``activation="sigmoid"`` gives the lecture network exactly.

Any input size works: the image is flattened, so the first layer's fan-in is H*W*C.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ssljax.errors import UserError
from ssljax.models.registry import register_encoder

_ACTIVATIONS = {"relu": nn.relu, "sigmoid": nn.sigmoid, "tanh": jnp.tanh}


@register_encoder("mlp")
class MLP(nn.Module):
  hidden: tuple[int, ...] = (1000, 500, 250)
  features: int = 30          # width of the linear code layer
  activation: str = "relu"    # "relu" | "sigmoid" (the 2006 paper) | "tanh"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # no BatchNorm or dropout; kept for the encoder contract
    if self.activation not in _ACTIVATIONS:
      raise UserError(f"mlp: activation must be one of {sorted(_ACTIVATIONS)}, "
                      f"got {self.activation!r}")
    act = _ACTIVATIONS[self.activation]
    stages = {}
    x = x.astype(self.dtype).reshape(x.shape[0], -1)
    for i, width in enumerate(self.hidden):
      x = act(nn.Dense(width, dtype=self.dtype, name=f"dense{i}")(x))
      stages[f"hidden{i}"] = x
    x = nn.Dense(self.features, dtype=self.dtype, name="code")(x)
    return x.astype(jnp.float32), stages
