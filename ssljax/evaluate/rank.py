"""How many dimensions the representation really uses, on held-out images, for every objective:
RankMe (Garrido et al. 2023), LiDAR (Thilak et al. 2023) and the collapse watch.

Why: a joint-embedding loss can be met by a representation that has collapsed, wholly (every image
to one point) or dimensionally (to a low-dimensional subspace); probes notice late and need labels.

- **RankMe**: ``exp(entropy(p))``, ``p_k = sigma_k / sum(sigma) + eps``, from the singular values
  sigma of the (N, D) embedding matrix of N held-out images: between 1 (rank 1) and min(N, D).
  Taken for the encoder's pooled features and, where the objective has one, the projector output.
- **LiDAR**: the same effective rank of the LDA matrix ``Sigma_w^{-1/2} Sigma_b Sigma_w^{-1/2}``
  over surrogate classes, each of n held-out images under q random views of the run's invariances
  (its class): Sigma_b the covariance of the class means, Sigma_w the mean within-class covariance
  plus ``delta * I``. High when the features tell images apart more than they tell views of one
  image apart, in many directions; for the encoder's pooled features.
- **Collapse watch**: the per-dimension standard deviation of the L2-normalised projector output
  (the encoder's, without a projector), averaged (SimSiam's diagnostic, ``losses.normalized_std``):
  about 1/sqrt(D) when healthy, 0 when collapsed. Training logs it as ``main/collapse_std``; the
  report flags a run whose held-out value is below ``COLLAPSED_RATIO / sqrt(D)``.
"""
from __future__ import annotations

import math
from typing import Mapping

import jax
import numpy as np

from ssljax.data import views
from ssljax.evaluate.geometry import Embed, _views_in_chunks, same_views
from ssljax.objectives import losses

RANKME_EPS = 1e-7   # Garrido et al.'s epsilon inside the entropy
LIDAR_DELTA = 1e-4  # Thilak et al.'s regularisation of Sigma_w ...
LIDAR_EPS = 1e-8    # ... and their epsilon inside the entropy
# Healthy embeddings spread over the sphere read std * sqrt(D) ~ 1; one tenth of that is a run whose
# embeddings sit (nearly) on one point, which no probe should be asked to rescue.
COLLAPSED_RATIO = 0.1


def effective_rank(values: np.ndarray, eps: float) -> float:
  """exp of the entropy of ``p = values / sum(values) + eps`` (values >= 0): the number of
  equally large values with the same entropy; 1 when one value carries everything."""
  values = np.clip(np.asarray(values, np.float64), 0.0, None)
  total = values.sum()
  if total <= 0:  # an all-zero spectrum: a point, rank 1 by convention
    return 1.0
  p = values / total + eps
  return float(np.exp(-np.sum(p * np.log(p))))


def rankme(embeddings: np.ndarray, eps: float = RANKME_EPS) -> float:
  """RankMe of an (N, D) embedding matrix (not centred, as in the paper)."""
  sigma = np.linalg.svd(np.asarray(embeddings, np.float64), compute_uv=False)
  return effective_rank(sigma, eps)


def lidar(embeddings: np.ndarray, delta: float = LIDAR_DELTA, eps: float = LIDAR_EPS) -> float:
  """LiDAR of ``embeddings`` (n, q, D): n surrogate classes of q views each."""
  e = np.asarray(embeddings, np.float64)
  n, q, d = e.shape
  class_means = e.mean(axis=1)                       # (n, D)
  between = class_means - class_means.mean(axis=0)
  sigma_b = between.T @ between / n
  within = (e - class_means[:, None]).reshape(n * q, d)
  sigma_w = within.T @ within / (n * q) + delta * np.eye(d)
  # Sigma_w^{-1/2} from its eigendecomposition (symmetric positive definite thanks to delta).
  w_values, w_vectors = np.linalg.eigh(sigma_w)
  inv_sqrt = (w_vectors / np.sqrt(w_values)) @ w_vectors.T
  lda = inv_sqrt @ sigma_b @ inv_sqrt
  return effective_rank(np.linalg.eigvalsh((lda + lda.T) / 2), eps)


_normalized_std = jax.jit(losses.normalized_std)  # one program, not a dozen op by op


def collapse_watch(embeddings: np.ndarray) -> dict:
  """{std, healthy_std (1/sqrt(D)), ratio (std * sqrt(D)), collapsed} of (N, D) embeddings."""
  d = embeddings.shape[-1]
  std = float(_normalized_std(embeddings))
  ratio = std * math.sqrt(d)
  return {"std": std, "healthy_std": 1 / math.sqrt(d), "ratio": ratio,
          "collapsed": bool(ratio < COLLAPSED_RATIO)}


def rank_report(embed: Embed, variables: dict, images: np.ndarray, view_config: Mapping,
                invariances, rank_config: Mapping, seed: int = 0, chunk: int = 512) -> dict:
  """The report's ``rankme``, ``lidar`` and ``collapse`` sections from held-out ``images``:
  RankMe on the first ``rank_config.rankme_images``, LiDAR on the first
  ``rank_config.lidar_images`` under ``rank_config.lidar_views`` views each."""
  clean = images[:int(rank_config["rankme_images"])]
  emb = _views_in_chunks(embed, variables, clean, lambda key, x: {"clean": x}, seed,
                         min(chunk, len(clean)))["clean"]
  result = {"rankme": {name: rankme(e) for name, e in emb.items()}}
  result["rankme"]["protocol"] = {"num_images": len(clean), "eps": RANKME_EPS,
                                  "dims": {name: int(e.shape[1]) for name, e in emb.items()}}
  watched = "projector" if "projector" in emb else "encoder"
  result["collapse"] = {"features": watched, **collapse_watch(emb[watched])}

  n, q = int(rank_config["lidar_images"]), int(rank_config["lidar_views"])
  invariances = views.check_invariances(tuple(invariances))
  subset = images[:n]

  def make(key, x):
    return {f"view{j}": v for j, v in enumerate(same_views(key, x, q, invariances, view_config))}

  per_view = _views_in_chunks(embed, variables, subset, make, seed + 1, min(chunk, len(subset)))
  encoder = np.stack([per_view[f"view{j}"]["encoder"] for j in range(q)], axis=1)  # (n, q, D)
  result["lidar"] = {"encoder": lidar(encoder), "protocol": {
      "num_images": len(subset), "views": q, "invariances": list(invariances),
      "delta": LIDAR_DELTA, "eps": LIDAR_EPS}}
  return result
