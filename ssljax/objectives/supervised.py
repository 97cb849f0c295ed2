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
from ssljax.objectives.base import LossOutput, Objective, register_objective


@register_objective("supervised")
class Supervised(Objective):
  default_config = {
      "invariances": ("flip",),  # the usual light augmentation of supervised training; () = none
  }
  needs_labels = True

  @classmethod
  def check_args(cls, args):
    problem = views.invariances_problem("invariances", args["invariances"])
    return [problem] if problem else []

  def __init__(self, inputs, encoder):
    super().__init__(inputs, encoder)
    if not self.num_classes:
      raise UserError("objective 'supervised' trains on labels, and the dataset has none; give it "
                      "labelled data or choose a self-supervised objective")
    # One view, or none: with no invariance the encoder reads the images as they are.
    self.view_specs = (views.ViewSpec(self.args["invariances"]),) if self.args["invariances"] else ()
    self.networks["classifier"] = LinearHead(self.num_classes)

  def init(self, key, images):
    variables = super().init(key, images)
    pooled, _ = self.features(variables, images)
    self.init_network(variables, "classifier", jax.random.fold_in(key, 1), pooled)
    return variables

  def loss(self, params, inputs):
    key_view, key_net = jax.random.split(inputs.key)
    labels = inputs.batch["labels"]
    x = views.to_float(inputs.batch["images"])
    if self.view_specs:
      # make_view with key_view itself (not make_views' split of it): the view drawn before
      # ViewSpecs existed, so fixed-seed runs are unchanged.
      x = views.make_view(key_view, x, self.view_specs[0].invariances, self.inputs.views)
    (pooled, stages), batch_stats = self.apply("encoder", params, inputs.batch_stats, x,
                                               train=True, key=key_net)
    logits, _ = self.apply("classifier", params, batch_stats, pooled, train=True)
    loss = losses.cross_entropy(logits, labels)
    return loss, LossOutput(batch_stats, {"loss": loss, "acc": losses.accuracy(logits, labels)},
                            probe_input=self.probe_input(pooled, stages))
