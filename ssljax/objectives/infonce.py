"""Contrastive InfoNCE (SimCLR): two views per image from the chosen invariances, encoder, MLP
projector, NT-Xent over the global batch (2N-2 negatives per anchor). The views, encoder pass and
projector are ``TwoViewObjective``'s, shared with alignment/uniformity. ``micro_batch_size`` embeds
the batch a slice at a time (gradient caching, ``ssljax/objectives/microbatch.py``): less memory,
the same global negatives."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ssljax.config_checks import number_problem
from ssljax.data import views
from ssljax.models.heads import MLPProjector
from ssljax.objectives import losses, microbatch
from ssljax.objectives.base import LossOutput, Objective, register_objective


class TwoViewObjective(Objective):
  """Two views per image, one encoder pass over both, an MLP projector; subclasses give the loss
  of the two projections (``pair_loss``). Their arguments include ``invariances`` and
  ``projector_dims``."""
  micro_batching = True  # micro_batch_size: gradient caching (ssljax/objectives/microbatch.py)

  @classmethod
  def check_args(cls, args):
    problems = [p for p in [views.invariances_problem("invariances", args["invariances"])] if p]
    dims = args["projector_dims"]
    if (isinstance(dims, (str, int)) or not dims
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims)):
      problems.append(f"projector_dims must be a non-empty tuple of positive integers, "
                      f"got {dims!r}")
    return problems

  def __init__(self, inputs, encoder):
    super().__init__(inputs, encoder)
    # Two full-size views that differ by the same invariances (SimCLR's symmetric pair).
    self.view_specs = (views.ViewSpec(self.args["invariances"]),) * 2
    self.networks["projector"] = MLPProjector(self.args["projector_dims"])
    self.micro_batch_size = inputs.micro_batch_size
    microbatch.num_micro_batches(inputs.batch_size, self.micro_batch_size)  # checks it divides

  def init(self, key, images):
    variables = super().init(key, images)
    pooled, _ = self.features(variables, images)
    self.init_network(variables, "projector", jax.random.fold_in(key, 1), pooled)
    return variables

  def two_views(self, key, images):
    return tuple(views.make_views(key, views.to_float(images), self.view_specs, self.inputs.views))

  def loss(self, params, inputs):
    key_views, key_net = jax.random.split(inputs.key)
    v1, v2 = self.two_views(key_views, inputs.batch["images"])
    # The projections of the whole batch, computed in micro-batches when configured; the loss
    # below always sees all of them, so every negative stays global.
    num = microbatch.num_micro_batches(v1.shape[0], self.micro_batch_size)
    (z1, z2, probe_in), batch_stats = microbatch.map_micro_batches(
        lambda two, stats, k: self.embed(params, stats, two, k), (v1, v2), inputs.batch_stats,
        key_net, num)
    # The loss's own randomness (LeJEPA's directions) is folded from the step's key, not split
    # from it, so the views and dropout of the other objectives stay the draws they always were.
    loss, pair_metrics = self.pair_loss(z1, z2, jax.random.fold_in(inputs.key, 2))
    # The collapse watch on every objective with a projector: ~1/sqrt(D) healthy, 0 collapsed.
    collapse = losses.normalized_std(jax.lax.stop_gradient(jnp.concatenate([z1, z2])))
    return loss, LossOutput(batch_stats, {"loss": loss, **pair_metrics, "collapse_std": collapse},
                            probe_input=probe_in)

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

  def pair_loss(self, z1, z2, key) -> tuple[jax.Array, dict]:
    """(loss, metrics) of the projections of the two views, each (N, D), and a key for the
    loss's own randomness (subclasses swap the formula, not the views)."""
    raise NotImplementedError


class SoftmaxTemperature:
  """Mixin of the objectives whose loss is a softmax over similarities / ``temperature`` (InfoNCE,
  MoCo v3): the argument is checked > 0, and a small one is the first suspect of a NaN."""

  @classmethod
  def check_args(cls, args):
    problem = number_problem("temperature", args["temperature"], low=0, low_open=True)
    return [problem] * bool(problem) + super().check_args(args)

  @classmethod
  def nonfinite_hints(cls, args):
    return [f"raise --config.objectives.{cls.name}.temperature (now {args['temperature']:g})"]


@register_objective("infonce")
class InfoNCE(SoftmaxTemperature, TwoViewObjective):
  default_config = {
      "temperature": 0.5,
      "invariances": ("flip", "scale"),  # which transformations the two views differ by
      "projector_dims": (512, 128),
  }

  def __init__(self, inputs, encoder):
    super().__init__(inputs, encoder)
    self.temperature = float(self.args["temperature"])  # --config.objectives.infonce.temperature

  def pair_loss(self, z1, z2, key):
    return losses.info_nce(z1, z2, self.temperature), {}
