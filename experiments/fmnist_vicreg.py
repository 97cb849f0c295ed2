"""VICReg (Bardes, Ponce & LeCun 2022) on Fashion-MNIST with the quickstart's CNN and views:
sim_coeff·MSE(z1, z2) + std_coeff·variance hinge + cov_coeff·off-diagonal covariance, on a
3-layer expander.

    python -m ssljax.pretrain --config=experiments/fmnist_vicreg.py --workdir=runs/vicreg
    python -m ssljax.pretrain --config=experiments/fmnist_vicreg.py:smoke --workdir=/tmp/vicreg_smoke

Everything but the objective is the quickstart's (fmnist_infonce.py: encoder, views, optimizer,
budget, probes), so the pair compares the formulas. The objective's arguments are its defaults
(ssljax/objectives/redundancy_reduction.py), chosen for small data; their validation figures are
to be filled in by the measurement runs.
"""
from ssljax.base_config import parse_arg, sibling_experiment


def get_config(arg=None):
  c = sibling_experiment(__file__, "fmnist_infonce", arg)
  c.objective = "vicreg"
  c.wandb.name = "fmnist_vicreg"
  if "smoke" in parse_arg(arg):
    c.objectives.vicreg.projector_dims = (64, 64, 64)  # seconds, not minutes: the smoke run's point
  return c
