"""Supervised cross-entropy with the same encoder and a linear head: the upper reference line of
every comparison (what the labels buy when the encoder may use them).

Batches carry ``labels`` (-1 = unlabelled, ignored by the loss); a dataset without labels is
refused before training (``needs_labels``). The probes still evaluate the encoder's features, so
the figure is comparable with the self-supervised objectives'.
"""
from __future__ import annotations

import jax

from ssljax.data import views
from ssljax.errors import UserError
from ssljax.models.heads import LinearHead
from ssljax.objectives import losses
from ssljax.objectives.base import Objective, Player, register_objective


@register_objective("supervised")
class Supervised(Objective):
  default_config = {
      "invariances": ("flip",),  # the usual light augmentation of supervised training; () = none
  }
  needs_labels = True

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if not self.num_classes:
      raise UserError("objective 'supervised' trains on labels, and the dataset has none; give it "
                      "labelled data or choose a self-supervised objective")
    self.invariances = views.check_invariances(self.args["invariances"])
    self.networks["classifier"] = LinearHead(self.num_classes)

  def init(self, key, images):
    variables = super().init(key, images)
    pooled, _ = self.features(variables, images)
    self.init_network(variables, "classifier", jax.random.fold_in(key, 1), pooled)
    return variables

  def players(self):
    return [Player("main", tuple(self.networks), self.loss, self.config.optimizer)]

  def loss(self, params, batch_stats, batch, key):
    key_view, key_net = jax.random.split(key)
    x = views.to_float(batch["images"])
    if self.invariances:
      x = views.make_view(key_view, x, self.invariances, self.config.views)
    (pooled, stages), batch_stats = self.apply("encoder", params, batch_stats, x, train=True,
                                               key=key_net)
    logits, _ = self.apply("classifier", params, batch_stats, pooled, train=True)
    loss = losses.cross_entropy(logits, batch["labels"])
    probe_loss, metrics = self.online_probe_loss(params, pooled, stages, batch["labels"])
    return loss + probe_loss, (batch_stats, {"loss": loss, "acc": losses.accuracy(logits, batch["labels"]),
                                             **metrics})
