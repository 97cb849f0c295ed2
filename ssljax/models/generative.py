"""Networks that make images: the convolutional decoder (an autoencoder's decoder and the GAN's
generator are the same DCGAN-shaped network), the autoencoder's bottleneck and the GAN's
discriminator head.

Output size and channels come from the data (``image_shape``), never from a name: the decoder plans
its upsampling from the image's height and width (see :func:`upsampling_plan`), so 28x28x1, 32x32x3,
8x8x1 and odd sizes all work without a config change.
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ssljax.models.layers import Conv


def upsampling_plan(height: int, width: int) -> tuple[int, int, int]:
  """(number of stride-2 upsamplings, base height, base width) for a decoder ending at (height,
  width): upsample while the starting map stays at least 4 pixels on its shorter side (DCGAN starts
  at 4x4), start from ceil(size / 2^n) and centre-crop any excess at the end (odd sizes)."""
  shorter = min(height, width)
  n = max(0, int(math.floor(math.log2(shorter / 4)))) if shorter >= 4 else 0
  return n, math.ceil(height / 2 ** n), math.ceil(width / 2 ** n)


class ConvDecoder(nn.Module):
  """DCGAN's generator (Radford et al. 2016): latent (B, L) -> Dense -> (h0, w0, C0) map -> stride-2
  transposed convolutions with BatchNorm + ReLU, halving the channels each time -> image *logits*
  (B, H, W, C). Logits, not pixels: binary cross-entropy reconstruction wants them; callers that
  want pixels in [0, 1] take ``sigmoid``."""
  image_shape: tuple[int, int, int]
  width: int = 64  # channels of the last hidden map; doubled at each stage towards the latent
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z, train: bool = False):
    height, width, channels = self.image_shape
    upsamples, base_h, base_w = upsampling_plan(height, width)
    features = self.width * 2 ** max(upsamples - 1, 0)
    bn = lambda x: nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x)
    x = nn.Dense(base_h * base_w * features, use_bias=False, dtype=self.dtype)(z.astype(self.dtype))
    x = nn.relu(bn(x.reshape(-1, base_h, base_w, features)))
    for _ in range(upsamples - 1):
      features //= 2
      x = nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME", use_bias=False,
                           dtype=self.dtype)(x)
      x = nn.relu(bn(x))
    if upsamples:
      x = nn.ConvTranspose(channels, (4, 4), strides=(2, 2), padding="SAME", dtype=self.dtype)(x)
    else:  # images smaller than 8 pixels: no upsampling, one convolution to the channels
      x = Conv(channels, (3, 3), dtype=self.dtype)(x)
    top, left = (x.shape[1] - height) // 2, (x.shape[2] - width) // 2
    return x[:, top:top + height, left:left + width, :].astype(jnp.float32)


class Bottleneck(nn.Module):
  """The autoencoder's latent code: a linear map of the encoder's features to ``latent_dim``."""
  latent_dim: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(self.latent_dim)(x.astype(jnp.float32))


class DiscriminatorHead(nn.Module):
  """The GAN discriminator's last layer on top of the encoder trunk: one real/fake logit per image."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(1)(x.astype(jnp.float32))[:, 0]
