"""On-device augmentations ("views"), written in JAX so they fuse into the jitted train step.

Each transform acts on ONE image (H, W, C) float in [0, 1] with its own key; ``make_view`` vmaps it
over the batch with one key per example, so every image gets independent randomness and the result
does not depend on how the batch is split across devices.

An *invariance* names the transformation a view may apply and the representation should ignore:
``flip`` (horizontal mirror with probability ``flip_prob``), ``scale`` (random-resized-crop back
to the input size, area fraction in ``scale``, aspect ratio in ``ratio``), and the optional
``color_jitter``, ``blur`` (both meant for RGB data; on grey images jitter changes brightness and
contrast only) and ``cutout``. Their strengths are the keys of ``config.views``.

An objective that needs several views per image, each its own invariances and output size (DINO's
two global and M smaller local crops), declares them as :class:`ViewSpec` s and builds them all at
once with :func:`make_views`; a view smaller than the input is cropped and resized to ``size``.
"""
from __future__ import annotations

import dataclasses
import math
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


def resize_crop(image: jax.Array, box: jax.Array, size: Sequence[int] | None = None) -> jax.Array:
  """Crops ``box`` (fractions) out of ``image`` and resizes it, bilinear, to ``size`` (out_h, out_w;
  default: the image's own size)."""
  h, w = image.shape[0], image.shape[1]
  out_h, out_w = (h, w) if size is None else size
  top, left, height, width = box
  # scale_and_translate maps input pixel coordinates to output ones: out = in * scale + translation.
  # (out_h / h) is the Python float 1.0 at the input size, which keeps full-size views bit-identical
  # to the one-size crop this function did before sizes existed.
  scale = jnp.stack([(out_h / h) / height, (out_w / w) / width])
  translation = -jnp.stack([top * h, left * w]) * scale
  return jax.image.scale_and_translate(image, (out_h, out_w, *image.shape[2:]), (0, 1), scale,
                                       translation, method="linear", antialias=False)


def random_resized_crop(key, image, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                        size: Sequence[int] | None = None) -> jax.Array:
  return resize_crop(image, crop_box(key, scale, ratio), size)


def grey(image: jax.Array) -> jax.Array:
  """Luma (ITU-R 601) of an (H, W, 3) image, or the image itself when it has one channel; (H, W, 1)."""
  if image.shape[-1] == 3:
    return image @ jnp.array([0.299, 0.587, 0.114], image.dtype)[:, None]
  return jnp.mean(image, axis=-1, keepdims=True)


def rotate_hue(image: jax.Array, turns: jax.Array) -> jax.Array:
  """Shifts the hue of an RGB image by ``turns`` of the colour wheel: a rotation of the chroma
  plane of YIQ, which keeps luma fixed (a smooth stand-in for the HSV shift of torchvision)."""
  to_yiq = jnp.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
  angle = 2 * jnp.pi * turns
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  rotation = jnp.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
  return image @ (jnp.linalg.inv(to_yiq) @ rotation @ to_yiq).T


def color_jitter(key: jax.Array, image: jax.Array, brightness: float, contrast: float,
                 saturation: float, hue: float, prob: float) -> jax.Array:
  """SimCLR's colour distortion, with probability ``prob``: brightness and contrast factors in
  [1 - s, 1 + s]; on RGB also saturation (blend with the grey image) and hue (+-``hue`` turns).
  Clipped to [0, 1] after each operation, as torchvision does."""
  k_apply, k_b, k_c, k_s, k_h = jax.random.split(key, 5)
  factor = lambda k, s: jax.random.uniform(k, minval=1 - s, maxval=1 + s)
  x = jnp.clip(image * factor(k_b, brightness), 0, 1)
  mean = jnp.mean(grey(x))
  x = jnp.clip((x - mean) * factor(k_c, contrast) + mean, 0, 1)
  if image.shape[-1] == 3:
    g = grey(x)
    x = jnp.clip((x - g) * factor(k_s, saturation) + g, 0, 1)
    x = jnp.clip(rotate_hue(x, jax.random.uniform(k_h, minval=-hue, maxval=hue)), 0, 1)
  return jnp.where(jax.random.bernoulli(k_apply, prob), x, image)


def gaussian_blur(key: jax.Array, image: jax.Array, sigma_range: Sequence[float],
                  prob: float) -> jax.Array:
  """With probability ``prob``, a separable Gaussian blur with sigma (in pixels) uniform in
  ``sigma_range``; the kernel spans 3 of the largest sigma each side (reflected at the border)."""
  k_apply, k_sigma = jax.random.split(key)
  sigma = jax.random.uniform(k_sigma, minval=sigma_range[0], maxval=sigma_range[1])
  h, w = image.shape[0], image.shape[1]
  radius = max(0, min(int(math.ceil(3 * sigma_range[1])), h - 1, w - 1))
  offsets = jnp.arange(-radius, radius + 1, dtype=image.dtype)
  weights = jnp.exp(-offsets ** 2 / (2 * sigma ** 2))
  weights = weights / jnp.sum(weights)
  padded = jnp.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="reflect")
  x = sum(weights[i] * padded[i:i + h] for i in range(2 * radius + 1))
  padded = jnp.pad(x, ((0, 0), (radius, radius), (0, 0)), mode="reflect")
  x = sum(weights[i] * padded[:, i:i + w] for i in range(2 * radius + 1))
  return jnp.where(jax.random.bernoulli(k_apply, prob), x, image)


def cutout(key: jax.Array, image: jax.Array, size: float, prob: float) -> jax.Array:
  """With probability ``prob``, fills a square of side ``size`` x the shorter image side, centred
  on a random pixel and clipped at the border, with the image's mean colour (DeVries & Taylor 2017
  zero a square of a mean-subtracted image: the same thing)."""
  k_apply, k_y, k_x = jax.random.split(key, 3)
  h, w = image.shape[0], image.shape[1]
  side = max(1, int(round(size * min(h, w))))
  top = jax.random.randint(k_y, (), 0, h) - side // 2
  left = jax.random.randint(k_x, (), 0, w) - side // 2
  rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  square = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
  square = square & jax.random.bernoulli(k_apply, prob)
  return jnp.where(square[..., None], jnp.mean(image, axis=(0, 1)), image)


Transform = Callable[[jax.Array, jax.Array, Mapping], jax.Array]

# name -> transform(key, image, view_config). Order of application is the order in this dict.
# ``scale`` comes first: the transforms after it act on the crop at the view's output size.
INVARIANCES: dict[str, Transform] = {
    "scale": lambda key, x, c: random_resized_crop(key, x, c["scale"], c["ratio"], c.get("size")),
    "flip": lambda key, x, c: random_flip(key, x, c["flip_prob"]),
    "color_jitter": lambda key, x, c: color_jitter(key, x, c["brightness"], c["contrast"],
                                                   c["saturation"], c["hue"], c["jitter_prob"]),
    "blur": lambda key, x, c: gaussian_blur(key, x, c["blur_sigma"], c["blur_prob"]),
    "cutout": lambda key, x, c: cutout(key, x, c["cutout_size"], c["cutout_prob"]),
}


def invariances_problem(key: str, invariances) -> str | None:
  """Why ``invariances`` is not a tuple of invariance names, as a config-check phrase, or None."""
  if isinstance(invariances, (tuple, list)) and all(n in INVARIANCES for n in invariances):
    return None
  return (f"{key} {invariances!r} has unknown names; valid: {', '.join(INVARIANCES)} (a tuple, "
          "e.g. ('flip', 'scale'), or () for none)")


def check_invariances(invariances: Sequence[str]) -> tuple[str, ...]:
  unknown = [name for name in invariances if name not in INVARIANCES]
  if unknown:
    raise UserError(f"unknown invariance(s) {unknown}; valid: {', '.join(INVARIANCES)} "
                    "(combine them as a list, e.g. ('flip', 'scale'))")
  return tuple(name for name in INVARIANCES if name in invariances)


def make_view(key: jax.Array, images: jax.Array, invariances: Sequence[str],
              config: Mapping, size: Sequence[int] | None = None) -> jax.Array:
  """One augmented view of a float batch (B, H, W, C), applying exactly ``invariances``, of
  spatial size ``size`` (out_h, out_w; default the input's). A smaller view without ``scale`` is
  the whole image resized."""
  names = check_invariances(invariances)
  size = None if size is None or tuple(size) == tuple(images.shape[1:3]) else tuple(size)
  config = {**config, "size": size}

  def augment(example_key, image):
    keys = jax.random.split(example_key, len(INVARIANCES))
    if size is not None and "scale" not in names:
      image = resize_crop(image, jnp.array([0.0, 0.0, 1.0, 1.0]), size)
    for k, name in zip(keys, INVARIANCES):
      if name in names:
        image = INVARIANCES[name](k, image, config)
    return image

  return jax.vmap(augment)(jax.random.split(key, images.shape[0]), images)


@dataclasses.dataclass(frozen=True)
class ViewSpec:
  """One view an objective asks for per image: its invariances, output size and, optionally, its
  own crop-area range (DINO's local crops cover less of the image than its global ones)."""
  invariances: tuple[str, ...]
  size: tuple[int, int] | None = None    # (out_h, out_w); None = the input's size
  scale: tuple[float, float] | None = None  # area fraction; None = config.views.scale

  def __post_init__(self):
    object.__setattr__(self, "invariances", check_invariances(self.invariances))


def make_views(key: jax.Array, images: jax.Array, specs: Sequence[ViewSpec],
               config: Mapping) -> list[jax.Array]:
  """Every view of ``specs`` of a float batch: view v of image i is drawn from its own key (split
  from ``key`` per view, then per example), so views and images are independent of each other, of
  how the batch is sharded, and fixed by ``key``. Two full-size views from ``split(key)`` are
  exactly what the two-view objectives drew before multi-view specs existed."""
  keys = jax.random.split(key, len(specs))
  return [make_view(k, images, spec.invariances,
                    config if spec.scale is None else {**config, "scale": spec.scale}, spec.size)
          for k, spec in zip(keys, specs)]
