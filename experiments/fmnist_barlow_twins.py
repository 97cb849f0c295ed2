"""Barlow Twins (Zbontar et al. 2021) on Fashion-MNIST with the quickstart's CNN and views:
the cross-correlation of the standardised expander outputs pushed to the identity,
Σ(1 − c_ii)² + λ·Σ_{i≠j} c_ij².

    python -m ssljax.pretrain --config=experiments/fmnist_barlow_twins.py --workdir=runs/barlow_twins
    python -m ssljax.pretrain --config=experiments/fmnist_barlow_twins.py:smoke --workdir=/tmp/barlow_twins_smoke

Everything but the objective is the quickstart's (fmnist_infonce.py: encoder, views, optimizer,
budget, probes), so the pair compares the formulas. The objective's arguments are its defaults
(ssljax/objectives/redundancy_reduction.py), chosen for small data; their validation figures are
to be filled in by the measurement runs.
"""
from ssljax.base_config import parse_arg, sibling_experiment


def get_config(arg=None):
  c = sibling_experiment(__file__, "fmnist_infonce", arg)
  c.objective = "barlow_twins"
  c.wandb.name = "fmnist_barlow_twins"
  if "smoke" in parse_arg(arg):
    c.objectives.barlow_twins.projector_dims = (64, 64, 64)  # seconds, not minutes: the smoke run's point
  return c
