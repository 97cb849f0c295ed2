"""Contrastive InfoNCE (SimCLR): two views per image from the chosen invariances, encoder, MLP
projector, NT-Xent over the global batch (2N-2 negatives per anchor)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ssljax.data import views
from ssljax.models.heads import MLPProjector
from ssljax.objectives import losses
from ssljax.objectives.base import Objective, Player, register_objective


@register_objective("infonce")
class InfoNCE(Objective):
  default_config = {
      "temperature": 0.5,
      "invariances": ("flip", "scale"),  # which transformations the two views differ by
      "projector_dims": (512, 128),
  }

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.invariances = views.check_invariances(self.args["invariances"])
    self.networks["projector"] = MLPProjector(self.args["projector_dims"])

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
    n = v1.shape[0]
    # One encoder pass over both views: BatchNorm statistics cover all 2N views, as in SimCLR.
    (pooled, stages), batch_stats = self.apply("encoder", params, batch_stats,
                                               jnp.concatenate([v1, v2]), train=True, key=key_net)
    z, batch_stats = self.apply("projector", params, batch_stats, pooled, train=True)
    loss = losses.info_nce(z[:n], z[n:], self.args["temperature"])
    first_view = jax.tree.map(lambda a: a[:n], stages)
    probe_loss, metrics = self.online_probe_loss(params, pooled[:n], first_view, batch["labels"])
    return loss + probe_loss, (batch_stats, {"loss": loss, **metrics})
