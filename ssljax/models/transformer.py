"""Transformer parts: multi-head self-attention, the pre-norm block, 2-D sine-cosine position
embeddings, the patch <-> image reshapes (shared by the Vision Transformer encoder and the MAE
decoder), and the MAE decoder itself.

The block is the one of ViT (Dosovitskiy et al. 2021) as the reference implementations build it
(big_vision, timm): ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``, LayerNorm eps 1e-6, a fused qkv
projection with bias, a GELU MLP of ``mlp_ratio`` times the width. The exact (erf) GELU, not flax's
default tanh approximation: it is what the reference weights and parameter-count checks assume, and
it costs the same. Weights are Xavier-uniform and biases zero, as in the official JAX ViT and MAE.

Attention goes through ``jax.nn.dot_product_attention``, which takes the fused cuDNN kernel on GPUs
where it applies and XLA's einsum-softmax-einsum elsewhere; its logits and softmax are float32
even when the block computes in bfloat16.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

LAYER_NORM_EPS = 1e-6  # the ViT papers' and reference implementations' value (flax's is 1e-5)

dense_init = nn.initializers.xavier_uniform()


class SelfAttention(nn.Module):
  """Multi-head self-attention over tokens (B, T, D): fused qkv projection, attention, output
  projection."""
  heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    batch, tokens, dim = x.shape
    if dim % self.heads:
      raise ValueError(f"width {dim} is not divisible by {self.heads} heads")
    qkv = nn.Dense(3 * dim, dtype=self.dtype, kernel_init=dense_init, name="qkv")(x)
    q, k, v = jnp.split(qkv.reshape(batch, tokens, 3 * self.heads, dim // self.heads), 3, axis=2)
    out = jax.nn.dot_product_attention(q, k, v)  # (B, T, heads, head_dim)
    return nn.Dense(dim, dtype=self.dtype, kernel_init=dense_init, name="proj")(
        out.reshape(batch, tokens, dim))


class TransformerBlock(nn.Module):
  """Pre-norm block: x + Attn(LN(x)), then x + MLP(LN(x))."""
  heads: int
  mlp_ratio: float = 4.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    dim = x.shape[-1]
    norm = lambda name: nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype, name=name)
    x = x + SelfAttention(self.heads, self.dtype, name="attn")(norm("norm1")(x))
    y = nn.Dense(int(dim * self.mlp_ratio), dtype=self.dtype, kernel_init=dense_init,
                 name="fc1")(norm("norm2")(x))
    y = nn.Dense(dim, dtype=self.dtype, kernel_init=dense_init, name="fc2")(
        nn.gelu(y, approximate=False))
    return x + y


def sincos_position_embeddings(grid: tuple[int, int], dim: int) -> np.ndarray:
  """Fixed 2-D sine-cosine position embeddings (grid_h * grid_w, dim), row-major like the patches:
  half the channels encode the row, half the column, each as sin/cos of the position at
  frequencies 1 / 10000^(i / (dim/4)) (Vaswani et al.'s 1-D scheme per axis, as MAE does)."""
  if dim % 4:
    raise ValueError(f"sine-cosine position embeddings need a width divisible by 4, got {dim}")
  omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))

  def encode(positions):
    angles = positions.reshape(-1)[:, None] * omega[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

  rows, cols = np.meshgrid(np.arange(grid[0], dtype=np.float64),
                           np.arange(grid[1], dtype=np.float64), indexing="ij")
  return np.concatenate([encode(rows), encode(cols)], axis=1).astype(np.float32)


def patchify(images: jax.Array, patch: int) -> jax.Array:
  """(B, H, W, C) -> (B, H/p * W/p, p*p*C): row-major patches, each flattened (row, column,
  channel) — the layout MAE's pixel targets use."""
  b, h, w, c = images.shape
  x = images.reshape(b, h // patch, patch, w // patch, patch, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: jax.Array, patch: int, image_shape: tuple[int, int, int]) -> jax.Array:
  """The inverse of :func:`patchify`: (B, N, p*p*C) -> (B, H, W, C)."""
  h, w, c = image_shape
  b = patches.shape[0]
  x = patches.reshape(b, h // patch, w // patch, patch, patch, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


class MAEDecoder(nn.Module):
  """MAE's light decoder (He et al. 2022): the encoder's tokens of the visible patches -> pixel
  predictions (B, N, patch_pixels) for every patch of a ``grid``.

  The encoder tokens (B, 1 + K, D_enc), class token first, are mapped to the decoder width; a
  shared learned mask token fills the N - K hidden positions; ``restore`` (B, N) puts the sequence
  [visible..., mask tokens...] back in patch order (``restore[b, j]`` is patch j's index in it);
  fixed 2-D sine-cosine position embeddings tell each token where its patch is (zero for the
  class token), as in the authors' code; pre-norm blocks, a LayerNorm and a linear map to pixels.
  The class token's prediction is dropped."""
  grid: tuple[int, int]
  patch_pixels: int        # p * p * C: the values one patch's prediction holds
  dim: int = 128
  depth: int = 2
  heads: int = 4
  mlp_ratio: float = 4.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens, restore, train: bool = False):
    batch, patches = restore.shape
    x = nn.Dense(self.dim, dtype=self.dtype, kernel_init=dense_init, name="embed")(
        tokens.astype(self.dtype))
    mask_token = self.param("mask_token", nn.initializers.normal(0.02), (1, 1, self.dim))
    hidden = jnp.broadcast_to(mask_token.astype(self.dtype),
                              (batch, patches - (x.shape[1] - 1), self.dim))
    sequence = jnp.concatenate([x[:, 1:], hidden], axis=1)
    sequence = jnp.take_along_axis(sequence, restore[..., None], axis=1)
    position = jnp.asarray(sincos_position_embeddings(self.grid, self.dim), self.dtype)
    x = jnp.concatenate([x[:, :1], sequence + position[None]], axis=1)
    for i in range(self.depth):
      x = TransformerBlock(self.heads, self.mlp_ratio, self.dtype, name=f"block_{i:02d}")(x)
    x = nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype, name="norm")(x)
    pixels = nn.Dense(self.patch_pixels, dtype=self.dtype, kernel_init=dense_init, name="pred")(x)
    return pixels[:, 1:].astype(jnp.float32)
