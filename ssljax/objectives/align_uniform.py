"""Alignment + uniformity (Wang & Isola 2020): optimise the two properties InfoNCE is shown to
trade off, directly. Same views, encoder and projector as InfoNCE (so the comparison isolates the
formula); the loss is ``losses.align_uniform`` on the L2-normalised projections of the two views.
"""
from __future__ import annotations

from ssljax.config_checks import number_problem
from ssljax.objectives import losses
from ssljax.objectives.base import register_objective
from ssljax.objectives.infonce import TwoViewObjective


@register_objective("align_uniform")
class AlignUniform(TwoViewObjective):
  default_config = {
      "invariances": ("flip", "scale"),
      "projector_dims": (512, 128),
      "alpha": 2.0,          # alignment exponent: mean ||z1 - z2||^alpha
      "t": 2.0,              # uniformity temperature: log mean exp(-t ||zi - zj||^2)
      "align_weight": 1.0,   # the paper's defaults weigh the two terms equally
      "unif_weight": 1.0,
  }

  @classmethod
  def check_args(cls, args):
    problems = [number_problem("alpha", args["alpha"], low=0, low_open=True),
                number_problem("t", args["t"], low=0, low_open=True),
                number_problem("align_weight", args["align_weight"], low=0),
                number_problem("unif_weight", args["unif_weight"], low=0)]
    return [p for p in problems if p] + super().check_args(args)

  @classmethod
  def nonfinite_hints(cls, args):
    return [f"lower --config.objectives.{cls.name}.t (now {args['t']:g})"]

  def pair_loss(self, z1, z2, key):
    a = self.args
    z1, z2 = losses.l2_normalize(z1), losses.l2_normalize(z2)
    align = losses.align_loss(z1, z2, a["alpha"])
    uniform = (losses.uniform_loss(z1, a["t"]) + losses.uniform_loss(z2, a["t"])) / 2
    loss = losses.align_uniform(z1, z2, a["alpha"], a["t"], a["align_weight"], a["unif_weight"])
    return loss, {"align": align, "uniform": uniform}
