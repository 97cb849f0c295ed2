"""LeJEPA (Balestriero & LeCun 2025) on Fashion-MNIST with the quickstart's CNN and views:
(1 − λ)·invariance to the views' mean + λ·SIGReg, no stop-gradient, no teacher.

    python -m ssljax.pretrain --config=experiments/fmnist_lejepa.py --workdir=runs/lejepa
    python -m ssljax.pretrain --config=experiments/fmnist_lejepa.py:smoke --workdir=/tmp/lejepa_smoke

Everything but the objective is the quickstart's (fmnist_infonce.py: encoder, views, optimizer,
budget, probes), so the pair compares the formulas. The objective's arguments are its defaults
(ssljax/objectives/redundancy_reduction.py): the paper's coefficients, and expander widths chosen
on the probe's validation split at this budget (the table in that module's docstring).
"""
from ssljax.base_config import quickstart_with_objective


def get_config(arg=None):
  return quickstart_with_objective(__file__, "lejepa", arg)
