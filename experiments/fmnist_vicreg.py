"""VICReg (Bardes, Ponce & LeCun 2022) on Fashion-MNIST with the quickstart's CNN and views:
sim_coeff·MSE(z1, z2) + std_coeff·variance hinge + cov_coeff·off-diagonal covariance, on a
3-layer expander.

    python -m ssljax.pretrain --config=experiments/fmnist_vicreg.py --workdir=runs/vicreg
    python -m ssljax.pretrain --config=experiments/fmnist_vicreg.py:smoke --workdir=/tmp/vicreg_smoke

Everything but the objective is the quickstart's (fmnist_infonce.py: encoder, views, optimizer,
budget, probes), so the pair compares the formulas. The objective's arguments are its defaults
(ssljax/objectives/redundancy_reduction.py): the paper's coefficients, and expander widths chosen
on the probe's validation split at this budget (the table in that module's docstring).
"""
from ssljax.base_config import quickstart_with_objective


def get_config(arg=None):
  return quickstart_with_objective(__file__, "vicreg", arg)
