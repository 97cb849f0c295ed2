"""Contrastive InfoNCE (SimCLR): two views per image from the chosen invariances, encoder, MLP
projector, NT-Xent over the global batch (2N-2 negatives per anchor). ``config.micro_batch_size``
embeds the batch a slice at a time (gradient caching, ``ssljax/train/microbatch.py``): less memory,
the same global negatives."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ssljax.data import views
from ssljax.models.heads import MLPProjector
from ssljax.objectives import losses
from ssljax.objectives.base import Objective, Player, register_objective
from ssljax.train import microbatch


@register_objective("infonce")
class InfoNCE(Objective):
  views_per_image = 2
  micro_batching = True  # config.micro_batch_size: gradient caching (ssljax/train/microbatch.py)
  default_config = {
      "temperature": 0.5,
      "invariances": ("flip", "scale"),  # which transformations the two views differ by
      "projector_dims": (512, 128),
  }

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.invariances = views.check_invariances(self.args["invariances"])
    self.networks["projector"] = MLPProjector(self.args["projector_dims"])
    self.micro_batch_size = int(self.config.get("micro_batch_size", 0))
    microbatch.num_micro_batches(int(self.config.batch_size), self.micro_batch_size)  # checks it

  def init(self, key, images):
    variables = super().init(key, images)
    pooled, _ = self.features(variables, images)
    self.init_network(variables, "projector", jax.random.fold_in(key, 1), pooled)
    return variables

  def players(self):
    owns = tuple(self.networks)  # encoder, projector, online probe
    return [Player("main", owns, self.loss, self.config.optimizer)]

  def two_views(self, key, images):
    k1, k2 = jax.random.split(key)
    x = views.to_float(images)
    return (views.make_view(k1, x, self.invariances, self.config.views),
            views.make_view(k2, x, self.invariances, self.config.views))

  def loss(self, params, batch_stats, batch, key):
    key_views, key_net = jax.random.split(key)
    v1, v2 = self.two_views(key_views, batch["images"])
    # The projections of the whole batch, computed in micro-batches when configured; the loss
    # below always sees all of them, so every negative stays global.
    num = microbatch.num_micro_batches(v1.shape[0], self.micro_batch_size)
    (z1, z2, probe_in), batch_stats = microbatch.map_micro_batches(
        lambda two, stats, k: self.embed(params, stats, two, k), (v1, v2), batch_stats, key_net,
        num)
    loss, pair_metrics = self.pair_loss(z1, z2)
    probe_loss, metrics = self.online_probe_loss(params, None, None, batch["labels"],
                                                 features=probe_in)
    return loss + probe_loss, (batch_stats, {"loss": loss, **pair_metrics, **metrics})

  def embed(self, params, batch_stats, two_views, key):
    """((z1, z2, the online probe's input from the first view), batch_stats) of a batch of view
    pairs: the whole batch, or one micro-batch of it."""
    v1, v2 = two_views
    n = v1.shape[0]
    # One encoder pass over both views: BatchNorm statistics cover all 2N views, as in SimCLR.
    # The views are interleaved (image i's two views in rows 2i, 2i+1), not concatenated: with the
    # batch sharded over devices, every device then keeps its own images' views and no rows move.
    pairs = jnp.stack([v1, v2], axis=1).reshape(2 * n, *v1.shape[1:])
    (pooled, stages), batch_stats = self.apply("encoder", params, batch_stats, pairs, train=True,
                                               key=key)
    z, batch_stats = self.apply("projector", params, batch_stats, pooled, train=True)
    first = lambda a: a.reshape(n, 2, *a.shape[1:])[:, 0]
    z = z.reshape(n, 2, -1)
    # A dict comprehension, not jax.tree.map, which would re-sort the stage names.
    probe_in = self.probe_input(first(pooled), {k: first(v) for k, v in stages.items()})
    return (z[:, 0], z[:, 1], probe_in), batch_stats

  def pair_loss(self, z1, z2) -> tuple[jax.Array, dict]:
    """The loss of the projections of the two views (subclasses swap the formula, not the views)."""
    return losses.info_nce(z1, z2, self.args["temperature"]), {}
