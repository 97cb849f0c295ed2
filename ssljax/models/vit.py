"""Vision Transformers (Dosovitskiy et al. 2021): ``vit_tiny``, ``vit_small``, ``vit_base``.

Widths 192 / 384 / 768, depth 12, 3 / 6 / 12 heads, MLP ratio 4, pre-norm blocks
(``models.transformer``), a class token, learned position embeddings, a final LayerNorm. At
224x224x3, patch 16, with a 1000-way linear head, the parameter counts are the reference
implementations' (timm, big_vision): 5,717,416 / 22,050,664 / 86,567,656 (``tests/test_vit.py``).

``patch_size=0`` (the default) chooses the largest of 16, 8, 4 that leaves a grid of at least 7x7
patches: 16 at 224 px (14x14 tokens, the paper's), 4 at 28x28 and 32x32 (49 and 64 tokens), 8 in
between. The choice is made once, when the parameters are created; afterwards the network keeps the
patch size of its patch-embedding kernel, so a crop or a transfer image of another size reuses it.
A side the patch size does not divide is a one-line error naming the key to change.

Inputs of another size than the one the network was built on (DINO's local crops, transfer at
another resolution) get the stored grid of position embeddings resized bilinearly to their grid.

Outputs, per the encoder contract: ``pooled`` is the final-LayerNorm'd class token (``pool="cls"``)
or the mean of the patch tokens (``pool="mean"``); ``stages`` are the blocks' outputs, tokens
(B, 1 + N, D), named ``block_00``, ``block_01``... so that sorting keeps network order (JAX rebuilds
dicts sorted) and freeze-depth transfer freezes whole blocks (the embedding belongs to the first).

Masked image modelling (MAE) shows the encoder a subset of the patches: :meth:`encode` takes
``keep`` (B, K) indices of the patches to keep, drops the others after the position embeddings are
added (so each kept token still knows where it is), and returns the normalised tokens themselves.
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax.errors import UserError
from ssljax.models.registry import ENCODERS, register_encoder
from ssljax.models.transformer import LAYER_NORM_EPS, TransformerBlock, patchify

AUTO_PATCH_SIZES = (16, 8, 4)  # tried largest first
MIN_AUTO_GRID = 7               # patches per side the automatic choice keeps (28 px / 4 = 7)
POOLS = ("cls", "mean")


def auto_patch_size(height: int, width: int) -> int:
  """The patch size ``patch_size=0`` picks for an image: see the module docstring."""
  for patch in AUTO_PATCH_SIZES:
    if min(height, width) // patch >= MIN_AUTO_GRID:
      return patch
  return AUTO_PATCH_SIZES[-1]


def build_patch_size(encoder, height: int, width: int) -> int:
  """The patch size a ViT takes when built on ``height`` x ``width`` images: its ``patch_size``,
  else the automatic choice. Objectives that cut images into the encoder's patches (MAE's masks,
  DINO's local crops) ask this before the network exists."""
  return encoder.patch_size or auto_patch_size(height, width)


def resize_position_embeddings(grid_embeddings: jax.Array, grid: tuple[int, int]) -> jax.Array:
  """The (h, w, D) learned position embeddings resampled bilinearly to ``grid`` (h', w').
  No antialiasing, as the reference implementations interpolate: each new position takes the
  embedding at its place in the old grid rather than an average over a neighbourhood."""
  if tuple(grid_embeddings.shape[:2]) == tuple(grid):
    return grid_embeddings
  return jax.image.resize(grid_embeddings, (*grid, grid_embeddings.shape[-1]), "bilinear",
                          antialias=False)


def pool_tokens(tokens: jax.Array, pool: str) -> jax.Array:
  """The (B, D) float32 representation of normalised tokens (B, 1 + N, D): class token or mean."""
  pooled = tokens[:, 0] if pool == "cls" else jnp.mean(tokens[:, 1:], axis=1)
  return pooled.astype(jnp.float32)


class PatchEmbedding(nn.Module):
  """Images (B, H, W, C) -> patch tokens (B, N, D) with their position embeddings added.

  The projection is a stride-p p x p convolution written as patchify + one matrix product; its
  kernel keeps the convolution's (p, p, C, D) layout, so the patch size can be read back."""
  dim: int
  patch: int
  dtype: Any = jnp.float32

  def stored_shape(self, name: str, fresh: tuple[int, ...]) -> tuple[int, ...]:
    """The shape parameter ``name`` was created with (``fresh`` when creating it now): position
    embeddings keep their grid when the network later sees images of another size."""
    return self.get_variable("params", name).shape if self.has_variable("params", name) else fresh

  @nn.compact
  def __call__(self, images):
    _, h, w, c = images.shape
    grid = (h // self.patch, w // self.patch)
    kernel = self.param("kernel", nn.initializers.xavier_uniform(in_axis=(0, 1, 2)),
                        (self.patch, self.patch, c, self.dim))
    bias = self.param("bias", nn.initializers.zeros, (self.dim,))
    tokens = patchify(images, self.patch) @ kernel.reshape(-1, self.dim).astype(self.dtype)
    position = self.param("pos_embed", nn.initializers.normal(0.02),
                          self.stored_shape("pos_embed", (*grid, self.dim)))
    position = resize_position_embeddings(position, grid).reshape(1, -1, self.dim)
    return tokens + bias.astype(self.dtype) + position.astype(self.dtype)


class ClassToken(nn.Module):
  """The learned class token (B, 1, D), plus a position embedding of its own as in the reference
  ViTs: redundant for a learned token, but part of their parameter count."""
  dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, batch: int):
    token = (self.param("token", nn.initializers.normal(0.02), (1, 1, self.dim))
             + self.param("pos_embed", nn.initializers.normal(0.02), (1, 1, self.dim)))
    return jnp.broadcast_to(token.astype(self.dtype), (batch, 1, self.dim))


class VisionTransformer(nn.Module):
  dim: int = 192
  depth: int = 12
  heads: int = 3
  mlp_ratio: float = 4.0
  patch_size: int = 0   # 0 = chosen from the input when the network is built (module docstring)
  pool: str = "cls"     # what ``pooled`` is: "cls" (class token) | "mean" (of the patch tokens)
  dtype: Any = jnp.float32  # compute dtype (bf16 on accelerators); parameters stay float32

  def __call__(self, images, train: bool = False):
    tokens, stages = self.encode(images, train=train)
    return pool_tokens(tokens, self.pool), stages

  def patch_size_for(self, height: int, width: int) -> int:
    """The patch size this network uses: its argument, else its patch kernel's, else the choice."""
    if not self.patch_size and self.has_variable("params", "patch_embed"):
      return self.get_variable("params", "patch_embed")["kernel"].shape[0]
    return build_patch_size(self, height, width)

  @nn.compact
  def encode(self, images, keep: jax.Array | None = None, train: bool = False):
    """(final-LayerNorm'd tokens (B, 1 + K, D), the class token first; stages {block_ii: tokens})
    for the patches ``keep`` (B, K) indexes, all N of them by default."""
    self.check_args()
    _, h, w, _ = images.shape
    patch = self.patch_size_for(h, w)
    check_patch_divides(type(self), h, w, patch, automatic=not self.patch_size)
    tokens = PatchEmbedding(self.dim, patch, self.dtype, name="patch_embed")(
        images.astype(self.dtype))
    if keep is not None:  # after the position embeddings: kept tokens know where they are
      tokens = jnp.take_along_axis(tokens, keep[..., None], axis=1)
    cls = ClassToken(self.dim, self.dtype, name="cls")(images.shape[0])
    x = jnp.concatenate([cls, tokens], axis=1)
    digits = max(2, len(str(self.depth - 1)))
    stages = {}
    for i in range(self.depth):
      name = f"block_{i:0{digits}d}"
      x = TransformerBlock(self.heads, self.mlp_ratio, self.dtype, name=name)(x)
      stages[name] = x
    return nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype, name="norm")(x), stages

  def check_args(self) -> None:
    name = registered_name(type(self))
    if self.pool not in POOLS:
      raise UserError(f"encoders.{name}.pool {self.pool!r} unknown; valid: {', '.join(POOLS)}")
    for key in ("dim", "depth", "heads"):
      if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
        raise UserError(f"encoders.{name}.{key} must be an integer >= 1, "
                        f"got {getattr(self, key)!r}")
    if self.dim % self.heads:
      raise UserError(f"encoders.{name}.dim {self.dim} is not divisible by heads {self.heads}; "
                      "choose heads dividing dim (head width = dim / heads)")
    if not isinstance(self.patch_size, int) or self.patch_size < 0:
      raise UserError(f"encoders.{name}.patch_size must be an integer >= 1, or 0 to choose it "
                      f"from the image size; got {self.patch_size!r}")


def registered_name(cls: type) -> str:
  """The registry name of a ViT class (messages name the config key to change)."""
  return next((n for n in ENCODERS.names() if ENCODERS[n] is cls), cls.__name__)


def check_patch_divides(cls: type, height: int, width: int, patch: int, automatic: bool) -> None:
  if height % patch == 0 and width % patch == 0:
    return
  name = registered_name(cls)
  common = math.gcd(height, width)
  divisors = [d for d in range(2, min(common, 16) + 1) if common % d == 0]
  fix = (f"set --config.encoders.{name}.patch_size to one dividing both sides "
         f"({', '.join(map(str, divisors))})" if divisors else
         f"no patch size above 1 divides both sides: resize the data")
  raise UserError(f"image {height}x{width} does not split into {patch}x{patch} patches "
                  f"({name} patch_size {patch}{', chosen automatically' if automatic else ''}); "
                  f"{fix}")


@register_encoder("vit_tiny")
class ViTTiny(VisionTransformer):
  dim: int = 192
  heads: int = 3


@register_encoder("vit_small")
class ViTSmall(VisionTransformer):
  dim: int = 384
  heads: int = 6


@register_encoder("vit_base")
class ViTBase(VisionTransformer):
  dim: int = 768
  heads: int = 12
