"""Input corruptions for the denoising autoencoder (Vincent et al. 2008, 2010).

Pure functions of (key, float images (B, H, W, C) in [0, 1], level): each changes exactly what its
name says and nothing else, which the tests pin. A "pixel" is a spatial position: masking and
salt-and-pepper act on all channels of a pixel together, so an RGB pixel is dropped or saturated
whole rather than turning into a stray colour.
"""
from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp

from ssljax.errors import UserError


def gaussian_noise(key: jax.Array, images: jax.Array, sigma: float) -> jax.Array:
  """Adds N(0, sigma^2) independently to every value. Not clipped: clipping would shrink the noise
  near black and white, so the corruption would no longer be the additive noise it says it is."""
  return images + sigma * jax.random.normal(key, images.shape, images.dtype)


def _pixel_mask(key: jax.Array, images: jax.Array, prob: float) -> jax.Array:
  """A boolean (B, H, W, 1) mask, True with probability ``prob`` per pixel."""
  return jax.random.bernoulli(key, prob, (*images.shape[:3], 1))


def masking_noise(key: jax.Array, images: jax.Array, drop_prob: float) -> jax.Array:
  """Sets each pixel to 0 with probability ``drop_prob``; the others are untouched."""
  return jnp.where(_pixel_mask(key, images, drop_prob), 0.0, images).astype(images.dtype)


def salt_and_pepper_noise(key: jax.Array, images: jax.Array, prob: float) -> jax.Array:
  """With probability ``prob`` a pixel becomes 0 or 1 (a fair coin decides which); the others are
  untouched."""
  k_where, k_value = jax.random.split(key)
  value = jax.random.bernoulli(k_value, 0.5, (*images.shape[:3], 1)).astype(images.dtype)
  return jnp.where(_pixel_mask(k_where, images, prob), value, images)


# noise kind -> (function, name of its level in config.objectives.denoising_autoencoder)
CORRUPTIONS: dict[str, tuple[Callable[[jax.Array, jax.Array, float], jax.Array], str]] = {
    "gaussian": (gaussian_noise, "gaussian_sigma"),
    "masking": (masking_noise, "masking_prob"),
    "salt_and_pepper": (salt_and_pepper_noise, "salt_and_pepper_prob"),
}


def check_noise(kind: str) -> str:
  if kind not in CORRUPTIONS:
    raise UserError(f"unknown noise {kind!r}; valid: {', '.join(CORRUPTIONS)}")
  return kind


def corrupt(key: jax.Array, images: jax.Array, kind: str, levels: Mapping[str, float]) -> jax.Array:
  """Applies the noise ``kind`` at the level its config key in ``levels`` names."""
  function, level_key = CORRUPTIONS[check_noise(kind)]
  return function(key, images, levels[level_key])
