"""The geometry of the representation on held-out images: alignment and uniformity (Wang & Isola
2020) and the invariance probe, for every objective.

Why both: a loss that pulls views together (alignment) can be met by collapsing everything to one
point (uniformity says whether it did), and "this objective learned flip invariance" is a claim the
invariance probe measures instead of assuming. The figures are taken at two places:

- ``encoder``: the pooled features the probes read (``objective.features``; for the GAN, the
  discriminator trunk), and
- ``projector``: the output of the objective's network named ``projector`` applied to those
  features, for any objective that has one (InfoNCE's MLP head; the loss sees this one).

Every objective is measured with the same views (``config.views``, flip + scale), whatever views it
trained on, so the numbers compare across objectives.
"""
from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ssljax.data import views
from ssljax.objectives import losses
from ssljax.objectives.base import Objective

# (variables, float images (B,H,W,C)) -> {name: (B, D)}; variables are an argument of the compiled
# function, not constants baked into it.
Embed = Callable[[dict, jax.Array], Mapping[str, jax.Array]]


def embedding_fn(objective: Objective) -> Embed:
  """{'encoder': pooled features, 'projector': its projection (if the objective has one)}."""

  def embed(variables, x):
    params, batch_stats = variables["params"], variables["batch_stats"]
    pooled, _ = objective.features(variables, x)
    out = {"encoder": pooled}
    if "projector" in objective.networks and "projector" in params:
      out["projector"], _ = objective.apply("projector", params, batch_stats, pooled, train=False)
    return out

  return embed


def _views_in_chunks(embed: Embed, variables: dict, images: np.ndarray, make: Callable, seed: int,
                     chunk: int) -> dict[str, dict[str, np.ndarray]]:
  """Runs ``make(key, x) -> {view_name: images}`` then ``embed`` on each view, chunk by chunk (one
  compile: the last chunk is padded); returns {view_name: {embedding_name: (N, D)}}."""

  @jax.jit
  def run(variables, batch, key):
    x = views.to_float(batch)
    return {name: embed(variables, v) for name, v in make(key, x).items()}

  parts: list = []
  for i, start in enumerate(range(0, len(images), chunk)):
    batch = images[start:start + chunk]
    pad = chunk - len(batch)
    if pad:
      batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
    out = jax.device_get(run(variables, batch, jax.random.fold_in(jax.random.PRNGKey(seed), i)))
    parts.append(jax.tree.map(lambda a: a[:chunk - pad], out))
  return jax.tree.map(lambda *a: np.concatenate(a), *parts)


def align_uniform(embed: Embed, variables: dict, images: np.ndarray, view_config: Mapping,
                  invariances=("flip", "scale"), num: int = 2048, seed: int = 0,
                  chunk: int = 512) -> dict:
  """Per embedding: ``align`` = mean ‖f(v1) − f(v2)‖² over two random views of each image (lower =
  views closer); ``uniform`` = log mean exp(−2‖f(xi) − f(xj)‖²) over pairs of different images
  (lower = more uniform). All on L2-normalised embeddings."""
  images = images[:num]

  def make(key, x):
    k1, k2 = jax.random.split(key)
    return {"v1": views.make_view(k1, x, invariances, view_config),
            "v2": views.make_view(k2, x, invariances, view_config)}

  emb = _views_in_chunks(embed, variables, images, make, seed, min(chunk, len(images)))
  result = {}
  for name in emb["v1"]:
    f1 = losses.l2_normalize(jnp.asarray(emb["v1"][name]))
    f2 = losses.l2_normalize(jnp.asarray(emb["v2"][name]))
    result[name] = {"align": float(losses.align_loss(f1, f2)),
                    "uniform": float((losses.uniform_loss(f1) + losses.uniform_loss(f2)) / 2)}
  result["protocol"] = {"num_images": len(images), "invariances": list(invariances),
                        "alpha": 2, "t": 2}
  return result


def invariance_scores(pair_cos: float, random_cos: float) -> float:
  """(pair − random) / (1 − random): 1 = f(T(x)) is f(x); 0 = no closer than another image's
  features. Undefined (nan) when random pairs are already identical, i.e. a collapsed encoder,
  which is trivially 'invariant' to everything."""
  if 1.0 - random_cos < 1e-6:
    return float("nan")
  return float((pair_cos - random_cos) / (1.0 - random_cos))


def invariance(embed: Embed, variables: dict, images: np.ndarray, view_config: Mapping,
               transforms=("flip", "scale"), num: int = 2048, seed: int = 0,
               chunk: int = 512, which: str = "encoder") -> dict:
  """For each transform T: ``pair`` = mean cos(f(x), f(T(x))), ``random`` = mean cos(f(x_i),
  f(T(x_j))) over a random derangement j ≠ i, and the normalised ``score`` (see
  ``invariance_scores``). ``flip`` always mirrors (probability 1), so the pair differs by exactly the
  transform; ``scale`` is the random-resized crop of ``view_config``."""
  images = images[:num]
  config = {**dict(view_config), "flip_prob": 1.0}
  views.check_invariances(transforms)
  names = tuple(dict.fromkeys(transforms))  # the caller's order, for the report

  def make(key, x):
    keys = jax.random.split(key, len(names))
    return {"clean": x, **{n: views.make_view(k, x, (n,), config) for n, k in zip(names, keys)}}

  emb = _views_in_chunks(embed, variables, images, make, seed, min(chunk, len(images)))
  clean = np.asarray(losses.l2_normalize(jnp.asarray(emb["clean"][which])))
  order = np.random.default_rng(seed).permutation(len(images))
  partner = np.empty_like(order)
  partner[order] = np.roll(order, 1)  # a derangement: nobody is paired with itself
  result = {}
  for name in names:
    moved = np.asarray(losses.l2_normalize(jnp.asarray(emb[name][which])))
    pair = float(np.mean(np.sum(clean * moved, -1)))
    rand = float(np.mean(np.sum(clean * moved[partner], -1)))
    result[name] = {"pair_cos": pair, "random_cos": rand, "score": invariance_scores(pair, rand)}
  result["protocol"] = {"num_images": len(images), "features": which,
                        "score_formula": "(pair_cos - random_cos) / (1 - random_cos)"}
  return result
