"""Barlow Twins (Zbontar et al. 2021) on Fashion-MNIST with the quickstart's CNN and views:
the cross-correlation of the standardised expander outputs pushed to the identity,
Σ(1 − c_ii)² + λ·Σ_{i≠j} c_ij².

    python -m ssljax.pretrain --config=experiments/fmnist_barlow_twins.py --workdir=runs/barlow_twins
    python -m ssljax.pretrain --config=experiments/fmnist_barlow_twins.py:smoke --workdir=/tmp/barlow_twins_smoke

Everything but the objective is the quickstart's (fmnist_infonce.py: encoder, views, optimizer,
budget, probes), so the pair compares the formulas. The objective's arguments are its defaults
(ssljax/objectives/redundancy_reduction.py): the paper's coefficients, and expander widths chosen
on the probe's validation split at this budget (the table in that module's docstring).
"""
from ssljax.base_config import quickstart_with_objective


def get_config(arg=None):
  return quickstart_with_objective(__file__, "barlow_twins", arg)
