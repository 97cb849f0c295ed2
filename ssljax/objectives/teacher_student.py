"""Teacher-student objectives on two views: BYOL, SimSiam and MoCo v3 (DINO, with its multi-crop
views and its centre, is ``dino.py``; the EMA teacher is shared from here).

All three have an online branch, encoder -> projector -> predictor, whose prediction of one view
is pulled towards the target of the other view, both ways. The target is what differs:

- **BYOL** (Grill et al. 2020) and **MoCo v3** (Chen, Xie & He 2021): the projection of an EMA
  teacher of the encoder and projector, a *follower* that the generic step moves after every
  round, ``teacher <- m * teacher + (1 - m) * online``, with ``m`` from ``base_momentum`` to 1 on
  BYOL's cosine (``schedules.cosine_to_one``). BYOL regresses it (``losses.byol``); MoCo v3
  contrasts it with every other key of the global batch (``losses.moco_v3``). The authors update
  the momentum encoder at the start of a step, before computing its keys; the step here updates
  it at the end of the previous one, from the same online parameters, so the keys are the same.
- **SimSiam** (Chen & He 2021): the online projection itself behind a stop-gradient, no teacher
  (``losses.negative_cosine``). ``predictor=False`` is the paper's broken configuration: without
  the predictor it collapses, and the report flags it (the collapse watch).

The teacher runs in training mode, normalising with the batch's statistics as the authors'
targets do, and keeps its own BatchNorm running statistics in the objective's state (BYOL's
``target_state``), so that it can be evaluated too: the report's teacher probe. Its outputs are
behind ``stop_gradient`` and its parameters are not the player's, so it never gets a gradient.

The views, encoder pass and projector are InfoNCE's (``TwoViewObjective``), so the comparison
with InfoNCE isolates the formula. Widths are chosen for small data (28x28 images, a 256-d CNN),
below the papers' 2048-4096, and compared with the papers' on the probe's validation split at the
quickstart's budget (3 epochs, batch 128, one seed; pooled linear probe / kNN; the untrained
encoder reads 0.8627 / 0.7948): BYOL 1024-wide heads 0.8737 / 0.7980, 4096-wide 0.8732 / 0.8038;
MoCo v3 1024 0.8807 / 0.8235, 4096 0.8793 / 0.8238. The pooled probe decides: 1024, which is also
faster. SimSiam's choices are at its ``default_config``.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from ssljax.config_checks import number_problem
from ssljax.models.heads import MLPProjector
from ssljax.objectives import losses, schedules
from ssljax.objectives.base import Follower, LossOutput, Objective, register_objective
from ssljax.objectives.infonce import SoftmaxTemperature, TwoViewObjective
from ssljax.objectives.redundancy_reduction import VIEWS

TEACHER = "teacher"                   # the follower's name, and its metrics' owner
TEACHER_STATS = "teacher_batch_stats"  # the teacher's BatchNorm statistics in the objective state

# The teacher averages the online network over about 1 / (1 - m) steps. The papers' 0.996 at
# ImageNet batch sizes spans 0.2-0.8 epochs (BYOL: 250 of 312 steps an epoch at batch 4096; DINO:
# of 1,250 at batch 1024); at batch 128 on Fashion-MNIST (469 steps an epoch) 0.99 spans 100 steps,
# 0.21 epochs, where 0.996 would average half an epoch of a 3-epoch run. The cosine then raises it.
SMALL_BATCH_MOMENTUM = 0.99


def dims_problem(key: str, dims, allow_empty: bool = False) -> str | None:
  """Why ``dims`` is not a tuple of positive integers (layer widths), or None."""
  if (isinstance(dims, (tuple, list)) and (dims or allow_empty)
      and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims)):
    return None
  what = "a tuple" if allow_empty else "a non-empty tuple"
  return f"{key} must be {what} of positive integers, got {dims!r}"


class EMATeacher(Objective):
  """Mix-in: an EMA teacher (``TEACHER``) of ``teacher_networks``, momentum from the argument
  ``base_momentum`` to 1 on BYOL's cosine; its BatchNorm statistics in the objective's state."""
  teacher_networks: tuple[str, ...] = ()

  @classmethod
  def check_args(cls, args):
    problem = number_problem("base_momentum", args["base_momentum"], low=0, high=1)
    return [problem] * bool(problem) + super().check_args(args)

  def followers(self):
    return [Follower(TEACHER, self.teacher_networks,
                     schedules.cosine_to_one(self.args["base_momentum"], self.total_steps))]

  def init_state(self, variables):
    # Copies: the step donates the state, and a buffer must not be donated twice.
    stats = variables["batch_stats"]
    return {TEACHER_STATS: jax.tree.map(jnp.copy, {n: stats[n] for n in self.teacher_networks
                                                   if n in stats})}

  def teacher_variables(self, variables):
    return {"params": variables["followers"][TEACHER],
            "batch_stats": variables["objective_state"][TEACHER_STATS]}


class SiameseObjective(TwoViewObjective):
  """Two views, encoder -> projector -> (predictor); the targets are ``targets``' and the formula
  of the two (prediction, other view's target) pairs is ``symmetric_loss``'s."""
  micro_batching = False  # a teacher pass per micro-batch is not written; the batches are small
  output_bn = False  # the projector ends in a BatchNorm without scale or offset (or argument)

  @classmethod
  def check_args(cls, args):
    # () is a linear predictor.
    problem = dims_problem("predictor_hidden_dims", args["predictor_hidden_dims"], allow_empty=True)
    return [problem] * bool(problem) + super().check_args(args)

  def __init__(self, inputs, encoder):
    super().__init__(inputs, encoder)
    dims = tuple(self.args["projector_dims"])
    self.networks["projector"] = MLPProjector(dims, output_bn=self.args.get("output_bn",
                                                                             self.output_bn))
    if self.args.get("predictor", True):
      # The prediction is compared with a target projection: same width.
      self.networks["predictor"] = MLPProjector((*self.args["predictor_hidden_dims"], dims[-1]))

  def init(self, key, images):
    variables = super().init(key, images)
    if "predictor" in self.networks:
      pooled, _ = self.features(variables, images)
      z, _ = self.apply("projector", variables["params"], variables["batch_stats"], pooled,
                        train=False)
      self.init_network(variables, "predictor", jax.random.fold_in(key, 2), z)
    return variables

  def loss(self, params, inputs):
    key_views, key_net = jax.random.split(inputs.key)
    two = self.two_views(key_views, inputs.batch["images"])
    (z1, z2, probe_in), batch_stats = self.embed(params, inputs.batch_stats, two, key_net)
    p1, p2, batch_stats = self.predict(params, batch_stats, z1, z2)
    (t1, t2), state = self.targets(inputs, two, (z1, z2), jax.random.fold_in(key_net, 1))
    t1, t2 = jax.lax.stop_gradient(t1), jax.lax.stop_gradient(t2)
    loss = self.symmetric_loss(p1, p2, t1, t2)
    # The collapse watch on the online projections: ~1/sqrt(D) healthy, 0 collapsed.
    collapse = losses.normalized_std(jax.lax.stop_gradient(jnp.concatenate([z1, z2])))
    return loss, LossOutput(batch_stats, {"loss": loss, "collapse_std": collapse}, state=state,
                            probe_input=probe_in)

  def predict(self, params, batch_stats, z1, z2):
    """(p1, p2, batch_stats): the predictor over both views in one pass (BatchNorm statistics
    over all 2N, as the encoder's), or the projections themselves without a predictor."""
    if "predictor" not in self.networks:
      return z1, z2, batch_stats
    n = z1.shape[0]
    p, batch_stats = self.apply("predictor", params, batch_stats,
                                jnp.stack([z1, z2], axis=1).reshape(2 * n, -1), train=True)
    p = p.reshape(n, 2, -1)
    return p[:, 0], p[:, 1], batch_stats

  def targets(self, inputs, two_views, projections, key) -> tuple[Sequence[jax.Array], dict | None]:
    """((t1, t2), the objective's new state or None): the targets of the two views."""
    raise NotImplementedError

  def symmetric_loss(self, p1, p2, t1, t2) -> jax.Array:
    raise NotImplementedError


class TeacherTargets(EMATeacher, SiameseObjective):
  """Targets: the EMA teacher's projections of the two views (BYOL, MoCo v3)."""
  teacher_networks = ("encoder", "projector")

  def targets(self, inputs, two_views, projections, key):
    teacher = inputs.followers[TEACHER]
    (t1, t2, _), stats = self.embed(teacher, inputs.state[TEACHER_STATS], two_views, key)
    return (t1, t2), {**inputs.state, TEACHER_STATS: stats}


@register_objective("byol")
class BYOL(TeacherTargets):
  """Grill et al. 2020: ``byol(p1, z'2) + byol(p2, z'1)``, z' the EMA teacher's projections
  (the paper's symmetrised loss, summed as the authors' code does)."""
  default_config = {
      "base_momentum": SMALL_BATCH_MOMENTUM,  # the paper's 0.996 is for batch 4096: see above
      "invariances": VIEWS,
      # The paper's projector and predictor: 4096 hidden, 256 out; 1024 hidden for small data
      # (validation figures in the module docstring).
      "projector_dims": (1024, 256),
      "predictor_hidden_dims": (1024,),
  }

  def symmetric_loss(self, p1, p2, t1, t2):
    return losses.byol(p1, t2) + losses.byol(p2, t1)


@register_objective("moco_v3")
class MoCoV3(SoftmaxTemperature, TeacherTargets):
  """Chen, Xie & He 2021: ``moco_v3(q1, k2, t) + moco_v3(q2, k1, t)``, q the online predictions
  and k the momentum encoder's projections; the negatives are every other key of the global
  batch. The ResNet variant's heads: a projector ending in BatchNorm, a predictor without it."""
  output_bn = True
  default_config = {
      "temperature": 0.2,                     # the paper's for ResNets
      "base_momentum": SMALL_BATCH_MOMENTUM,  # the authors' 0.99, with their cosine option on
      "invariances": VIEWS,
      # The paper's MLPs: 4096 hidden, 256 out; 1024 hidden for small data (validation figures
      # in the module docstring).
      "projector_dims": (1024, 256),
      "predictor_hidden_dims": (1024,),
  }

  def symmetric_loss(self, p1, p2, t1, t2):
    t = float(self.args["temperature"])
    return losses.moco_v3(p1, t2, t) + losses.moco_v3(p2, t1, t)


@register_objective("simsiam")
class SimSiam(SiameseObjective):
  """Chen & He 2021: ``(D(p1, sg(z2)) + D(p2, sg(z1))) / 2`` with ``D = negative_cosine``; one
  shared encoder, no teacher. ``predictor=False`` drops the predictor: the configuration the
  paper shows collapsing, kept to see the collapse watch fire."""
  default_config = {
      "predictor": True,
      # The paper's projector ends in a BatchNorm (its Table 4: +0.7 points on ImageNet). Chosen
      # on the probe's validation split (quickstart budget, 3 epochs, batch 128; untrained
      # encoder 0.8627 pooled / 0.7948 kNN): with it 0.8725 / 0.8077, without 0.8535 / 0.7752,
      # below the untrained encoder. In training it pins every dimension's batch variance to 1,
      # so the broken configuration can only collapse onto a few outlier images, slowly and out
      # of the collapse watch's sight (no predictor, 1,400 steps: held-out std 0.87x healthy);
      # the ablation without the predictor therefore drops it too (fmnist_simsiam.py:no_predictor),
      # and then collapses within 250 steps (0.07x held out).
      "output_bn": True,
      "invariances": VIEWS,
      # The paper's 3-layer projector is as wide as ResNet-50's 2048-d output, and its predictor
      # a 4x narrower bottleneck (512); 1024 and 256 for small data.
      "projector_dims": (1024, 1024, 1024),
      "predictor_hidden_dims": (256,),
  }

  @classmethod
  def check_args(cls, args):
    problems = [f"{key} must be True or False, got {args[key]!r}"
                for key in ("predictor", "output_bn") if not isinstance(args[key], bool)]
    return problems + super().check_args(args)

  def targets(self, inputs, two_views, projections, key):
    return projections, None  # the online projections; the loss stops their gradient

  def symmetric_loss(self, p1, p2, t1, t2):
    return (losses.negative_cosine(p1, t2) + losses.negative_cosine(p2, t1)) / 2
