"""DINO (Caron et al. 2021): self-distillation with no labels. A student and its EMA teacher, each
an encoder, a DINO head (MLP to a bottleneck, ``models.heads.DINOProjector``) and a
weight-normalised linear layer to K prototypes (``models.heads.Prototypes``); the student's
softmax over the prototypes, at temperature ``student_temp``, is pulled towards the teacher's
centred and sharpened one (``losses.dino``).

Multi-crop: every image gives 2 global crops (area ``global_scale``, the input's size) and
``num_local_crops`` local crops (area ``local_scale``, ``local_side`` times the input's side:
14x14 from 28x28; on a ViT rounded down to whole patches, 12x12 in 4x4 patches, as the paper's
96 px are 6 patches of 16). The teacher sees the global crops only, the student all of them, and
the loss averages the cross-entropy over every (teacher crop, different student crop) pair:
2 (M + 1) pairs. Each resolution is one encoder pass (BatchNorm statistics over all its crops), as
the authors' multi-crop wrapper does.

Collapse is what the centre and the sharpening prevent between them: the teacher's outputs are
centred by ``center``, an EMA (momentum ``center_momentum``) of the teacher's mean output over the
global batch and both global crops, kept in the objective's state and checkpointed with it; its
temperature warms up linearly from ``warmup_teacher_temp`` to ``teacher_temp`` over the first
``teacher_temp_warmup_fraction`` of the run. The teacher follows the student's three networks with
BYOL's cosine momentum and keeps its own BatchNorm statistics (``teacher_student.EMATeacher``).

Not done from the authors' recipe: freezing the last layer in the first epoch, gradient clipping
at 3 (``--config.optimizer.grad_clip=3`` does it) and the weight-decay schedule; the optimizer is
the quickstart's, so the comparison with the other objectives isolates the formula.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ssljax.config_checks import number_problem
from ssljax.data import views
from ssljax.models.heads import DINOProjector, Prototypes
from ssljax.models.vit import VisionTransformer, build_patch_size
from ssljax.objectives import losses, schedules
from ssljax.objectives.base import LossOutput, register_objective
from ssljax.objectives.redundancy_reduction import VIEWS
from ssljax.objectives.teacher_student import (SMALL_BATCH_MOMENTUM, TEACHER, TEACHER_STATS,
                                               EMATeacher, dims_problem)

CENTER = "center"  # the objective state's entry: (K,)


def area_problem(key: str, value) -> str | None:
  """Why ``value`` is not a crop-area range (low, high) with 0 < low <= high <= 1, or None."""
  if (isinstance(value, (tuple, list)) and len(value) == 2
      and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
      and 0 < value[0] <= value[1] <= 1):
    return None
  return f"{key} must be an area range (low, high) with 0 < low <= high <= 1, got {value!r}"


def local_crop_size(side: float, height: int, width: int, encoder) -> tuple[int, int]:
  """The local crops' (h, w): ``side`` times the input's. A ViT splits every crop into the patches
  it was built with, so there each side is rounded down to whole patches (at least one): 14 -> 12
  at patch 4, 0.43 of 28 as the paper's 96 of 224, where 14 would not split at all."""
  size = [max(1, round(side * n)) for n in (height, width)]
  if isinstance(encoder, VisionTransformer):
    patch = build_patch_size(encoder, height, width)
    size = [max(patch, s // patch * patch) for s in size]
  return size[0], size[1]


@register_objective("dino")
class DINO(EMATeacher):
  teacher_networks = ("encoder", "projector", "prototypes")
  default_config = {
      "num_local_crops": 6,            # the paper's 2 x 224^2 + 6 x 96^2
      "local_side": 0.5,               # 14x14 local crops from 28x28 (the paper's 96 / 224 = 0.43)
      "global_scale": (0.4, 1.0),      # the authors' global_crops_scale ...
      "local_scale": (0.05, 0.4),      # ... and local_crops_scale
      "invariances": VIEWS,            # applied to every crop ("scale" makes them crops)
      # The paper's head: 2048, 2048, bottleneck 256, then K = 65,536 prototypes; for 10 classes
      # and a 256-d CNN, 512-wide, bottleneck 128 and K = 1024. K on the probe's validation split
      # (quickstart budget, 3 epochs, batch 128; pooled probe / kNN, untrained 0.8627 / 0.7948):
      # 1024 0.8825 / 0.8262, 4096 0.8805 / 0.8233, at the same speed.
      "projector_dims": (512, 512, 128),
      "num_prototypes": 1024,
      # BatchNorm in the head's hidden layers (the authors' use_bn_in_head, off for their ViTs).
      # A CNN's pooled features share a large mean, so without it the centred teacher outputs
      # barely differ between images and the targets go uniform: measured on Fashion-MNIST (CNN
      # 16-32-64, batch 64, 4 local crops, 300 steps), teacher entropy 6.89 of log K = 6.93 and
      # a bottleneck std 0.20x healthy without; 6.10 and 0.76x with.
      "head_bn": True,
      "student_temp": 0.1,
      "teacher_temp": 0.07,            # the paper's 0.04 -> 0.07 warm-up ...
      "warmup_teacher_temp": 0.04,
      "teacher_temp_warmup_fraction": 0.3,  # ... over its first 30 of 100 epochs
      "center_momentum": 0.9,
      "base_momentum": SMALL_BATCH_MOMENTUM,  # the paper's 0.996 is for batch 1024: see there
  }

  @classmethod
  def check_args(cls, args):
    problems = [
        number_problem("num_local_crops", args["num_local_crops"], integer=True, low=0),
        number_problem("local_side", args["local_side"], low=0, high=1, low_open=True),
        area_problem("global_scale", args["global_scale"]),
        area_problem("local_scale", args["local_scale"]),
        views.invariances_problem("invariances", args["invariances"]),
        dims_problem("projector_dims", args["projector_dims"]),
        number_problem("num_prototypes", args["num_prototypes"], integer=True, low=1),
        number_problem("student_temp", args["student_temp"], low=0, low_open=True),
        number_problem("teacher_temp", args["teacher_temp"], low=0, low_open=True),
        number_problem("warmup_teacher_temp", args["warmup_teacher_temp"], low=0, low_open=True),
        number_problem("teacher_temp_warmup_fraction", args["teacher_temp_warmup_fraction"],
                       low=0, high=1),
        number_problem("center_momentum", args["center_momentum"], low=0, high=1),
    ]
    if not isinstance(args["head_bn"], bool):
      problems.append(f"head_bn must be True or False, got {args['head_bn']!r}")
    return [p for p in problems if p] + super().check_args(args)

  @classmethod
  def nonfinite_hints(cls, args):
    return [f"raise --config.objectives.{cls.name}.student_temp (now {args['student_temp']:g}) "
            "or set --config.optimizer.grad_clip=3 (the authors' clipping)"]

  def __init__(self, inputs, encoder):
    super().__init__(inputs, encoder)
    a = self.args
    height, width = self.image_shape[:2]
    self.local_size = local_crop_size(a["local_side"], height, width, encoder)
    crop = lambda scale, size=None: views.ViewSpec(tuple(a["invariances"]), size, tuple(scale))
    self.view_specs = ((crop(a["global_scale"]),) * 2
                       + (crop(a["local_scale"], self.local_size),) * a["num_local_crops"])
    self.networks["projector"] = DINOProjector(tuple(a["projector_dims"]), use_bn=a["head_bn"])
    self.networks["prototypes"] = Prototypes(a["num_prototypes"])
    warmup = round(a["teacher_temp_warmup_fraction"] * self.total_steps)
    self.teacher_temp = (schedules.linear_warmup(a["warmup_teacher_temp"], a["teacher_temp"], warmup)
                         if warmup else schedules.constant(a["teacher_temp"]))

  def init(self, key, images):
    variables = super().init(key, images)
    pooled, _ = self.features(variables, images)
    bottleneck = self.init_network(variables, "projector", jax.random.fold_in(key, 1), pooled)
    self.init_network(variables, "prototypes", jax.random.fold_in(key, 2), bottleneck)
    return variables

  def init_state(self, variables):
    return {**super().init_state(variables),
            CENTER: jnp.zeros((self.args["num_prototypes"],), jnp.float32)}

  def crops(self, key, images) -> tuple[list[jax.Array], list[jax.Array]]:
    """(the 2 global crops, the local crops) of a uint8 batch, each (N, h, w, C) floats."""
    crops = views.make_views(key, views.to_float(images), self.view_specs, self.inputs.views)
    return crops[:2], crops[2:]

  def forward(self, params, batch_stats, crops, key):
    """(logits (V, N, K), bottlenecks (V, N, B), the first crop's (pooled, stages), batch_stats)
    of V same-size crops of N images, in one pass (training mode). The crops are interleaved
    (image i's in consecutive rows), so a device sharding the batch keeps its own images' crops."""
    v, n = len(crops), crops[0].shape[0]
    x = jnp.stack(crops, axis=1).reshape(v * n, *crops[0].shape[1:])
    (pooled, stages), batch_stats = self.apply("encoder", params, batch_stats, x, train=True,
                                               key=key)
    bottleneck, batch_stats = self.apply("projector", params, batch_stats, pooled, train=True)
    logits, batch_stats = self.apply("prototypes", params, batch_stats, bottleneck, train=True)
    per_crop = lambda a: jnp.swapaxes(a.reshape(n, v, *a.shape[1:]), 0, 1)
    first = lambda a: a.reshape(n, v, *a.shape[1:])[:, 0]
    # A dict comprehension, not jax.tree.map, which would re-sort the stage names.
    first_crop = (first(pooled), {name: first(a) for name, a in stages.items()})
    return per_crop(logits), per_crop(bottleneck), first_crop, batch_stats

  def loss(self, params, inputs):
    key_views, key_net = jax.random.split(inputs.key)
    k_global, k_local, k_teacher = jax.random.split(key_net, 3)
    global_crops, local_crops = self.crops(key_views, inputs.batch["images"])
    student, bottleneck, (pooled, stages), batch_stats = self.forward(
        params, inputs.batch_stats, global_crops, k_global)
    student = list(student)
    if local_crops:
      local, _, _, batch_stats = self.forward(params, batch_stats, local_crops, k_local)
      student += list(local)
    # The teacher sees the global crops only.
    teacher_logits, _, _, teacher_stats = self.forward(
        inputs.followers[TEACHER], inputs.state[TEACHER_STATS], global_crops, k_teacher)
    teacher_logits = jax.lax.stop_gradient(teacher_logits)

    center = inputs.state[CENTER]
    student_temp, teacher_temp = float(self.args["student_temp"]), self.teacher_temp(inputs.step)
    terms = [losses.dino(s, teacher_logits[t], center, student_temp, teacher_temp)
             for t in range(len(global_crops)) for v, s in enumerate(student) if v != t]
    loss = sum(terms) / len(terms)

    # The centre from the teacher's raw outputs, both global crops of the global batch (under
    # jit the mean is over every device's images: the authors all-reduce it).
    m = float(self.args["center_momentum"])
    batch_center = jnp.mean(teacher_logits.reshape(-1, teacher_logits.shape[-1]), axis=0)
    state = {CENTER: m * center + (1 - m) * batch_center, TEACHER_STATS: teacher_stats}

    targets = jax.nn.softmax((teacher_logits - center) / teacher_temp, axis=-1)
    entropy = jnp.mean(-jnp.sum(targets * jnp.log(jnp.maximum(targets, 1e-30)), axis=-1))
    collapse = losses.normalized_std(jax.lax.stop_gradient(bottleneck.reshape(
        -1, bottleneck.shape[-1])))
    metrics = {"loss": loss, "teacher_temp": teacher_temp, "teacher_entropy": entropy,
               "collapse_std": collapse}
    return loss, LossOutput(batch_stats, metrics, state=state,
                            probe_input=self.probe_input(pooled, stages))
