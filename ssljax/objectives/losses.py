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
  # As (||d||^2)^(alpha/2), with no square root: its gradient at d = 0 (a pair of identical views)
  # is 0 * inf = NaN, and a single such pair made the whole step's gradient NaN. PyTorch's norm,
  # which the authors' code uses, gives 0 there; so does this.
  sq = jnp.sum(jnp.square(x - y), axis=1)
  safe = jnp.where(sq > 0, sq, 1.0)
  return jnp.mean(jnp.where(sq > 0, safe ** (alpha / 2), 0.0))


def uniform_loss(x: jax.Array, t: float = 2) -> jax.Array:
  """Wang & Isola's uniformity: log mean_{i<j} exp(-t ||x_i - x_j||^2) (inputs L2-normalised)."""
  # From the Gram matrix, ||a||^2 + ||b||^2 - 2 a.b: (N, N) memory, where the broadcast difference
  # (N, N, D) would be 4 GiB for the 2048 held-out images the evaluation measures at D = 256.
  x = x.astype(jnp.float32)
  norms = jnp.sum(x * x, axis=-1)
  sq_dists = jnp.maximum(norms[:, None] + norms[None, :] - 2.0 * (x @ x.T), 0.0)
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


# --- redundancy reduction and Gaussian regularisation (VICReg, Barlow Twins, LeJEPA) ------------
def off_diagonal(m: jax.Array) -> jax.Array:
  """The entries of square ``m`` off its diagonal, zeros on it (same shape: sums stay sums)."""
  return jnp.where(jnp.eye(m.shape[0], dtype=bool), 0.0, m)


def vicreg_terms(z1: jax.Array, z2: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """VICReg's three unweighted terms (Bardes, Ponce & LeCun 2022; as in the authors'
  main_vicreg.py), z1, z2: (N, D) expander outputs of two views of the same N images:

  - invariance: mean over every element of (z1 - z2)^2;
  - variance: per view, the mean over dimensions of relu(1 - sqrt(var + 1e-4)), with the unbiased
    variance over the batch; the two views averaged;
  - covariance: per view, the sum of the squared off-diagonal entries of the (N - 1)-normalised
    covariance matrix, divided by D; the two views summed.
  """
  z1, z2 = z1.astype(jnp.float32), z2.astype(jnp.float32)
  n, d = z1.shape
  invariance = jnp.mean((z1 - z2) ** 2)

  def variance_and_covariance(z):
    z = z - jnp.mean(z, axis=0)
    # The 1e-4 inside the root keeps the gradient finite when a dimension has collapsed.
    std = jnp.sqrt(jnp.sum(z * z, axis=0) / (n - 1) + 1e-4)
    cov = z.T @ z / (n - 1)
    return jnp.mean(jax.nn.relu(1.0 - std)), jnp.sum(off_diagonal(cov) ** 2) / d

  (var1, cov1), (var2, cov2) = variance_and_covariance(z1), variance_and_covariance(z2)
  return invariance, (var1 + var2) / 2, cov1 + cov2


def vicreg(z1: jax.Array, z2: jax.Array, sim_coeff: float = 25.0, std_coeff: float = 25.0,
           cov_coeff: float = 1.0) -> jax.Array:
  """VICReg: ``sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance`` of
  :func:`vicreg_terms`; the paper's coefficients (25, 25, 1) by default."""
  invariance, variance, covariance = vicreg_terms(z1, z2)
  return sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance


def barlow_twins_terms(z1: jax.Array, z2: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(on-diagonal, off-diagonal) terms of Barlow Twins (Zbontar et al. 2021, as the authors'
  main.py): each dimension of z1, z2 (N, D) standardised over the batch (biased variance, eps 1e-5
  inside the root: BatchNorm without affine, in training mode), ``c = z1n^T z2n / N``;
  returns (sum_i (1 - c_ii)^2, sum_{i != j} c_ij^2)."""
  def standardise(z):
    z = z.astype(jnp.float32)
    mean = jnp.mean(z, axis=0)
    return (z - mean) * jax.lax.rsqrt(jnp.mean((z - mean) ** 2, axis=0) + 1e-5)

  c = standardise(z1).T @ standardise(z2) / z1.shape[0]
  return jnp.sum((1.0 - jnp.diagonal(c)) ** 2), jnp.sum(off_diagonal(c) ** 2)


def barlow_twins(z1: jax.Array, z2: jax.Array, lambd: float = 0.0051) -> jax.Array:
  """Barlow Twins: ``sum_i (1 - c_ii)^2 + lambd * sum_{i != j} c_ij^2`` (see
  :func:`barlow_twins_terms`); lambd = 0.0051 is the paper's, tuned for an 8192-d projector."""
  on_diagonal, off_diag = barlow_twins_terms(z1, z2)
  return on_diagonal + lambd * off_diag


# Epps-Pulley's quadrature (the LeJEPA paper's listing): the integrand's Gaussian weight is below
# 4e-6 beyond |t| = 5, so 17 trapezoid knots on [-5, 5] cover it.
SIGREG_KNOTS = 17
SIGREG_T_MAX = 5.0


def sigreg_directions(key: jax.Array, dim: int, num: int) -> jax.Array:
  """``num`` random unit directions in R^dim as the columns of a (dim, num) matrix: isotropic
  Gaussian draws, normalised (uniform on the sphere)."""
  a = jax.random.normal(key, (dim, num), jnp.float32)
  return a / jnp.linalg.norm(a, axis=0, keepdims=True)


def sigreg(z: jax.Array, directions: jax.Array) -> jax.Array:
  """SIGReg (Balestriero & LeCun 2025): how far the embeddings are from an isotropic standard
  Gaussian, sketched along random directions. z: (..., N, D), the last-but-one axis the samples
  (leading axes, e.g. views, are tested separately); directions: (D, M), columns normalised here.

  For each direction a, the Epps-Pulley statistic of the projections x_i = a . z_i,
  ``N * integral |mean_i exp(i t x_i) - exp(-t^2 / 2)|^2 exp(-t^2 / 2) dt`` (empirical vs the
  standard normal characteristic function, Gaussian-weighted), by the trapezoidal rule on
  ``t = linspace(-5, 5, 17)``; returns the mean over directions (and leading axes).
  """
  z = z.astype(jnp.float32)
  directions = directions / jnp.linalg.norm(directions, axis=0, keepdims=True)
  t = jnp.linspace(-SIGREG_T_MAX, SIGREG_T_MAX, SIGREG_KNOTS)
  gauss = jnp.exp(-t ** 2 / 2)  # the standard normal's characteristic function, and the weight
  xt = (z @ directions)[..., None] * t  # (..., N, M, T)
  # exp(i t x) = cos(t x) + i sin(t x); the normal's characteristic function is real.
  err = (jnp.mean(jnp.cos(xt), axis=-3) - gauss) ** 2 + jnp.mean(jnp.sin(xt), axis=-3) ** 2
  statistic = jnp.trapezoid(err * gauss, t, axis=-1) * z.shape[-2]  # (..., M)
  return jnp.mean(statistic)


def lejepa_terms(embeddings: jax.Array, directions: jax.Array,
                 num_global: int | None = None) -> tuple[jax.Array, jax.Array]:
  """(invariance, SIGReg) of LeJEPA on ``embeddings`` (V, N, D): V views of N images, the first
  ``num_global`` (default: all) the global views. Invariance: the mean over views, images and
  dimensions of (z_v - c)^2, c the mean of the global views' embeddings of that image; SIGReg: of
  each view's (N, D) embeddings, averaged over the views."""
  embeddings = embeddings.astype(jnp.float32)
  centre = jnp.mean(embeddings[:num_global], axis=0)
  invariance = jnp.mean((embeddings - centre) ** 2)
  return invariance, sigreg(embeddings, directions)


def lejepa(embeddings: jax.Array, directions: jax.Array, lambd: float = 0.05,
           num_global: int | None = None) -> jax.Array:
  """LeJEPA: ``(1 - lambd) * invariance + lambd * SIGReg`` (:func:`lejepa_terms`); the paper's
  one trade-off hyperparameter, 0.05 by default."""
  invariance, regulariser = lejepa_terms(embeddings, directions, num_global)
  return (1 - lambd) * invariance + lambd * regulariser


def normalized_std(z: jax.Array) -> jax.Array:
  """The collapse watch (SimSiam, Chen & He 2021): the per-dimension standard deviation over the
  batch of the L2-normalised embeddings, averaged over dimensions. About 1/sqrt(D) when the
  embeddings spread over the sphere, 0 when they have collapsed to one point."""
  return jnp.mean(jnp.std(l2_normalize(z.astype(jnp.float32)), axis=0))


# --- masked image modelling (MAE) ---------------------------------------------------------------
def normalize_patches(patches: jax.Array, eps: float = 1e-6) -> jax.Array:
  """MAE's per-patch normalised pixel targets (``norm_pix_loss``): each patch (the last axis) minus
  its mean, divided by sqrt(var + eps), with the unbiased variance over the patch's values (as the
  authors' code computes it)."""
  patches = patches.astype(jnp.float32)
  mean = jnp.mean(patches, axis=-1, keepdims=True)
  var = jnp.var(patches, axis=-1, keepdims=True, ddof=1)
  return (patches - mean) / jnp.sqrt(var + eps)


def mae(predictions: jax.Array, patches: jax.Array, mask: jax.Array,
        norm_pix_loss: bool = False) -> jax.Array:
  """The masked autoencoder's loss (He et al. 2022): predictions and target patches (B, N, P)
  (P = pixels per patch), mask (B, N) 1 where a patch was hidden from the encoder. The mean over
  the masked patches of each patch's mean squared error, ``sum_i m_i mean_p (pred - target)^2 /
  sum_i m_i``; predictions on visible patches carry no weight (not even a NaN's). Targets are the
  pixels, or with ``norm_pix_loss`` their per-patch normalisation (:func:`normalize_patches`)."""
  target = normalize_patches(patches) if norm_pix_loss else patches.astype(jnp.float32)
  per_patch = jnp.mean((predictions.astype(jnp.float32) - target) ** 2, axis=-1)
  masked = mask.astype(bool)
  return jnp.sum(jnp.where(masked, per_patch, 0.0)) / jnp.maximum(jnp.sum(masked), 1)


# --- teacher-student: BYOL, SimSiam, MoCo v3, DINO ------------------------------------------------
# Each takes the online (student) outputs first and the targets second; the targets come from a
# teacher or a stop-gradient branch, and the objectives, not these formulas, stop their gradient.
def cosine_similarity(a: jax.Array, b: jax.Array) -> jax.Array:
  """Row-wise cosine of (N, D) arrays: (N,)."""
  return jnp.sum(l2_normalize(a.astype(jnp.float32)) * l2_normalize(b.astype(jnp.float32)), axis=-1)


def byol(p: jax.Array, z: jax.Array) -> jax.Array:
  """BYOL's regression loss (Grill et al. 2020, eq. 2): ``mean_i (2 - 2 cos(p_i, z_i))``, the
  squared distance of the L2-normalised online prediction p and target projection z, (N, D) each."""
  return jnp.mean(2.0 - 2.0 * cosine_similarity(p, z))


def negative_cosine(p: jax.Array, z: jax.Array) -> jax.Array:
  """SimSiam's D(p, z) (Chen & He 2021, eq. 1): ``-mean_i cos(p_i, z_i)``, (N, D) each."""
  return -jnp.mean(cosine_similarity(p, z))


def moco_v3(q: jax.Array, k: jax.Array, temperature: float) -> jax.Array:
  """MoCo v3's contrastive loss (Chen, Xie & He 2021, as the authors' ``contrastive_loss``): with
  q and k L2-normalised, ``CE(q k^T / temperature, arange(N)) * 2 * temperature``; query i's key
  is k_i, every other key of the (global) batch a negative. The factor 2 t keeps the gradient's
  scale independent of the temperature."""
  q, k = l2_normalize(q.astype(jnp.float32)), l2_normalize(k.astype(jnp.float32))
  logits = q @ k.T / temperature
  labels = jnp.arange(q.shape[0])
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)) * (2 * temperature)


def dino(student_logits: jax.Array, teacher_logits: jax.Array, center: jax.Array,
         student_temp: float, teacher_temp: float) -> jax.Array:
  """DINO's cross-entropy for one (teacher crop, student crop) pair (Caron et al. 2021, eq. 1 with
  the centring of section 3.1): ``mean_i sum_k -softmax((t_i - c) / teacher_temp)_k *
  log_softmax(s_i / student_temp)_k``; logits (N, K), the centre c (K,)."""
  targets = jax.nn.softmax((teacher_logits.astype(jnp.float32) - center) / teacher_temp, axis=-1)
  log_probs = jax.nn.log_softmax(student_logits.astype(jnp.float32) / student_temp, axis=-1)
  return jnp.mean(-jnp.sum(targets * log_probs, axis=-1))
