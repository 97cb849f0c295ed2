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
  compile: the last chunk is padded); returns {view_name: {embedding_name: (N, D)}}.

  The views go through ``embed`` one after another in a ``lax.map``, so the program holds one copy
  of the network, not one per view (LiDAR takes 8 views): it compiles in a fraction of the time."""

  @jax.jit
  def run(variables, batch, key):
    made = make(key, views.to_float(batch))
    out = jax.lax.map(lambda v: embed(variables, v), jnp.stack(list(made.values())))
    return {name: jax.tree.map(lambda a, i=i: a[i], out) for i, name in enumerate(made)}

  parts: list = []
  for i, start in enumerate(range(0, len(images), chunk)):
    batch = images[start:start + chunk]
    pad = chunk - len(batch)
    if pad:
      batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
    out = jax.device_get(run(variables, batch, jax.random.fold_in(jax.random.PRNGKey(seed), i)))
    parts.append(jax.tree.map(lambda a: a[:chunk - pad], out))
  return jax.tree.map(lambda *a: np.concatenate(a), *parts)


def same_views(key: jax.Array, x: jax.Array, count: int, invariances, view_config) -> jax.Array:
  """(count, *x.shape): ``count`` random views of ``x`` under the same invariances, the j-th from
  ``jax.random.split(key, count)[j]``; one copy of the view code in the program (``vmap``)."""
  return jax.vmap(lambda k: views.make_view(k, x, invariances, view_config))(
      jax.random.split(key, count))


def align_uniform(embed: Embed, variables: dict, images: np.ndarray, view_config: Mapping,
                  invariances=("flip", "scale"), seed: int = 0, chunk: int = 512) -> dict:
  """Per embedding: ``align`` = mean ‖f(v1) − f(v2)‖² over two random views of each image (lower =
  views closer); ``uniform`` = log mean exp(−2‖f(xi) − f(xj)‖²) over pairs of different images
  (lower = more uniform). All on L2-normalised embeddings."""

  def make(key, x):
    v1, v2 = same_views(key, x, 2, invariances, view_config)
    return {"v1": v1, "v2": v2}

  emb = _views_in_chunks(embed, variables, images, make, seed, min(chunk, len(images)))
  result = {}
  for name in emb["v1"]:
    align, uniform = _align_uniform_figures(emb["v1"][name], emb["v2"][name])
    result[name] = {"align": float(align), "uniform": float(uniform)}
  result["protocol"] = {"num_images": len(images), "invariances": list(invariances),
                        "alpha": 2, "t": 2}
  return result


@jax.jit
def _align_uniform_figures(e1: jax.Array, e2: jax.Array) -> tuple[jax.Array, jax.Array]:
  # One program: op by op, the formulas' dozens of small operations each compiled on their own
  # took seconds of every evaluation.
  f1, f2 = losses.l2_normalize(e1), losses.l2_normalize(e2)
  return losses.align_loss(f1, f2), (losses.uniform_loss(f1) + losses.uniform_loss(f2)) / 2


# Compiled for the same reason (called on host arrays, returns a host array).
_l2_normalize = jax.jit(losses.l2_normalize)


def invariance_scores(pair_cos: float, random_cos: float) -> float:
  """(pair − random) / (1 − random): 1 = f(T(x)) is f(x); 0 = no closer than another image's
  features. Undefined (nan) when random pairs are already identical, i.e. a collapsed encoder,
  which is trivially 'invariant' to everything."""
  if 1.0 - random_cos < 1e-6:
    return float("nan")
  return float((pair_cos - random_cos) / (1.0 - random_cos))


def invariance(embed: Embed, variables: dict, images: np.ndarray, view_config: Mapping,
               transforms=("flip", "scale"), seed: int = 0, chunk: int = 512,
               which: str = "encoder") -> dict:
  """For each transform T: ``pair`` = mean cos(f(x), f(T(x))), ``random`` = mean cos(f(x_i),
  f(T(x_j))) over a random derangement j ≠ i, and the normalised ``score`` (see
  ``invariance_scores``). ``flip`` always mirrors (probability 1), so the pair differs by exactly the
  transform; ``scale`` is the random-resized crop of ``view_config``."""
  config = {**dict(view_config), "flip_prob": 1.0}
  views.check_invariances(transforms)
  names = tuple(dict.fromkeys(transforms))  # the caller's order, for the report

  def make(key, x):
    keys = jax.random.split(key, len(names))
    return {"clean": x, **{n: views.make_view(k, x, (n,), config) for n, k in zip(names, keys)}}

  emb = _views_in_chunks(embed, variables, images, make, seed, min(chunk, len(images)))
  clean = np.asarray(_l2_normalize(emb["clean"][which]))
  order = np.random.default_rng(seed).permutation(len(images))
  partner = np.empty_like(order)
  partner[order] = np.roll(order, 1)  # a derangement: nobody is paired with itself
  result = {}
  for name in names:
    moved = np.asarray(_l2_normalize(emb[name][which]))
    pair = float(np.mean(np.sum(clean * moved, -1)))
    rand = float(np.mean(np.sum(clean * moved[partner], -1)))
    result[name] = {"pair_cos": pair, "random_cos": rand, "score": invariance_scores(pair, rand)}
  result["protocol"] = {"num_images": len(images), "features": which,
                        "score_formula": "(pair_cos - random_cos) / (1 - random_cos)"}
  return result
