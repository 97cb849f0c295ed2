"""Pure loss functions on arrays: the formulas users cite (contract: names and signatures).

No parameters, no modules, no devices: each takes arrays and returns a scalar, so they are tested
against hand-computed values and reused by any objective.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), eps))


def info_nce(z1: jax.Array, z2: jax.Array, temperature: float) -> jax.Array:
  """SimCLR's NT-Xent. z1, z2: (N, D) un-normalised projections of two views of the same N images.

  Each of the 2N views is an anchor whose positive is the other view of its image and whose
  negatives are the remaining 2N-2 views; returns the mean over the 2N anchors of
  -log(exp(s_pos / t) / sum_{k != anchor} exp(s_k / t)) with cosine similarities s.
  """
  n = z1.shape[0]
  z = l2_normalize(jnp.concatenate([z1, z2], axis=0).astype(jnp.float32))
  logits = z @ z.T / temperature
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)  # an anchor is not its own negative
  positives = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(0, n)])
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, positives))


def align_loss(x: jax.Array, y: jax.Array, alpha: float = 2) -> jax.Array:
  """Wang & Isola's alignment: mean over pairs of ||x_i - y_i||_2^alpha (inputs L2-normalised)."""
  return jnp.mean(jnp.linalg.norm(x - y, axis=1) ** alpha)


def uniform_loss(x: jax.Array, t: float = 2) -> jax.Array:
  """Wang & Isola's uniformity: log mean_{i<j} exp(-t ||x_i - x_j||^2) (inputs L2-normalised)."""
  sq_dists = jnp.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
  n = x.shape[0]
  upper = jnp.triu(jnp.ones((n, n), dtype=bool), k=1)
  # log-mean-exp over the upper triangle, computed stably.
  values = jnp.where(upper, -t * sq_dists, -jnp.inf)
  return jax.nn.logsumexp(values) - jnp.log(n * (n - 1) / 2)


def align_uniform(z1: jax.Array, z2: jax.Array, alpha: float = 2, t: float = 2,
                  align_weight: float = 1.0, unif_weight: float = 1.0) -> jax.Array:
  """Wang & Isola's objective on L2-normalised features of two views:
  ``align_weight * align_loss(z1, z2, alpha) + unif_weight * (uniform_loss(z1, t) + uniform_loss(z2, t)) / 2``."""
  uniform = (uniform_loss(z1, t) + uniform_loss(z2, t)) / 2
  return align_weight * align_loss(z1, z2, alpha) + unif_weight * uniform


def mean_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Reconstruction: mean over every element of (prediction - target)^2."""
  return jnp.mean((predictions.astype(jnp.float32) - targets) ** 2)


def binary_cross_entropy_with_logits(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Reconstruction of pixels in [0, 1] (soft targets): mean over every element of
  -[y log sigmoid(l) + (1 - y) log(1 - sigmoid(l))], computed from logits for stability."""
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), targets))


def gan_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """The discriminator's binary cross-entropy, real = 1 and fake = 0:
  mean(-log sigmoid(real)) + mean(-log(1 - sigmoid(fake))) (Goodfellow et al. 2014)."""
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def gan_generator_loss(fake_logits: jax.Array) -> jax.Array:
  """The non-saturating generator loss mean(-log sigmoid(D(G(z)))): same fixed point as minimising
  log(1 - D(G(z))), but strong gradients early on, when the discriminator rejects every sample."""
  return jnp.mean(jax.nn.softplus(-fake_logits))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy over examples whose label is >= 0 (-1 marks "unlabelled")."""
  valid = labels >= 0
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
  return jnp.sum(jnp.where(valid, losses, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  valid = labels >= 0
  hits = (jnp.argmax(logits, axis=-1) == labels) & valid
  return jnp.sum(hits) / jnp.maximum(jnp.sum(valid), 1)
