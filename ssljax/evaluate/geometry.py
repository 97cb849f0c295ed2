"""Alignment and uniformity (Wang & Isola 2020) of the encoder's normalised features, measured on
held-out images and their augmented views, for every objective."""
from __future__ import annotations

import jax
import numpy as np

from ssljax.data import views
from ssljax.objectives import losses
from ssljax.objectives.base import Objective


def align_uniform(objective: Objective, variables: dict, images: np.ndarray, view_config,
                  invariances=("flip", "scale"), num: int = 2048, seed: int = 0) -> dict:
  """``align``: mean squared distance between the features of two random views of an image;
  ``uniform``: log mean Gaussian potential between features of different images (lower = more
  uniform). Both on L2-normalised pooled features."""
  images = images[:num]

  @jax.jit
  def measure(variables, batch, key):
    k1, k2 = jax.random.split(key)
    x = views.to_float(batch)
    f1 = losses.l2_normalize(objective.features(variables, views.make_view(k1, x, invariances, view_config))[0])
    f2 = losses.l2_normalize(objective.features(variables, views.make_view(k2, x, invariances, view_config))[0])
    return losses.align_loss(f1, f2), (losses.uniform_loss(f1) + losses.uniform_loss(f2)) / 2

  align, uniform = measure(variables, images, jax.random.PRNGKey(seed))
  return {"align": float(align), "uniform": float(uniform), "num_images": len(images),
          "invariances": list(invariances)}
