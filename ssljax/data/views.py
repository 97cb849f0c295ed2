"""On-device augmentations ("views"), written in JAX so they fuse into the jitted train step.

Each transform acts on ONE image (H, W, C) float in [0, 1] with its own key; ``make_view`` vmaps it
over the batch with one key per example, so every image gets independent randomness and the result
does not depend on how the batch is split across devices.

An *invariance* names the transformation a view may apply and the representation should ignore:
``flip`` (horizontal mirror with probability ``flip_prob``) and ``scale`` (random-resized-crop back
to the input size, area fraction in ``scale``, aspect ratio in ``ratio``).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from ssljax.errors import UserError


def to_float(images: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [0, 1]."""
  return images.astype(jnp.float32) / 255.0


def random_flip(key: jax.Array, image: jax.Array, prob: float = 0.5) -> jax.Array:
  return jnp.where(jax.random.bernoulli(key, prob), image[:, ::-1, :], image)


def crop_box(key: jax.Array, scale: Sequence[float], ratio: Sequence[float]) -> jax.Array:
  """A random crop as fractions of the image: (top, left, height, width), all in [0, 1]."""
  k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
  area = jax.random.uniform(k_area, minval=scale[0], maxval=scale[1])
  log_ratio = jax.random.uniform(k_ratio, minval=jnp.log(ratio[0]), maxval=jnp.log(ratio[1]))
  aspect = jnp.exp(log_ratio)  # width / height
  height = jnp.clip(jnp.sqrt(area / aspect), 0.0, 1.0)
  width = jnp.clip(jnp.sqrt(area * aspect), 0.0, 1.0)
  top = jax.random.uniform(k_top) * (1.0 - height)
  left = jax.random.uniform(k_left) * (1.0 - width)
  return jnp.stack([top, left, height, width])


def resize_crop(image: jax.Array, box: jax.Array) -> jax.Array:
  """Crops ``box`` (fractions) out of ``image`` and resizes it back to the image's size, bilinear."""
  h, w = image.shape[0], image.shape[1]
  top, left, height, width = box
  # scale_and_translate maps input pixel coordinates to output ones: out = in * scale + translation.
  scale = jnp.stack([1.0 / height, 1.0 / width])
  translation = -jnp.stack([top * h, left * w]) * scale
  return jax.image.scale_and_translate(image, image.shape, (0, 1), scale, translation,
                                       method="linear", antialias=False)


def random_resized_crop(key, image, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> jax.Array:
  return resize_crop(image, crop_box(key, scale, ratio))


Transform = Callable[[jax.Array, jax.Array, Mapping], jax.Array]

# name -> transform(key, image, view_config). Order of application is the order in this dict.
INVARIANCES: dict[str, Transform] = {
    "scale": lambda key, x, c: random_resized_crop(key, x, c["scale"], c["ratio"]),
    "flip": lambda key, x, c: random_flip(key, x, c["flip_prob"]),
}


def check_invariances(invariances: Sequence[str]) -> tuple[str, ...]:
  unknown = [name for name in invariances if name not in INVARIANCES]
  if unknown:
    raise UserError(f"unknown invariance(s) {unknown}; valid: {', '.join(INVARIANCES)} "
                    "(combine them as a list, e.g. ('flip', 'scale'))")
  return tuple(name for name in INVARIANCES if name in invariances)


def make_view(key: jax.Array, images: jax.Array, invariances: Sequence[str],
              config: Mapping) -> jax.Array:
  """One augmented view of a float batch (B, H, W, C), applying exactly ``invariances``."""
  names = check_invariances(invariances)

  def augment(example_key, image):
    keys = jax.random.split(example_key, len(INVARIANCES))
    for k, name in zip(keys, INVARIANCES):
      if name in names:
        image = INVARIANCES[name](k, image, config)
    return image

  return jax.vmap(augment)(jax.random.split(key, images.shape[0]), images)
