"""LeJEPA (Balestriero & LeCun 2025) on Fashion-MNIST with the quickstart's CNN and views:
(1 − λ)·invariance to the views' mean + λ·SIGReg, no stop-gradient, no teacher.

    python -m ssljax.pretrain --config=experiments/fmnist_lejepa.py --workdir=runs/lejepa
    python -m ssljax.pretrain --config=experiments/fmnist_lejepa.py:smoke --workdir=/tmp/lejepa_smoke

Everything but the objective is the quickstart's (fmnist_infonce.py: encoder, views, optimizer,
budget, probes), so the pair compares the formulas. The objective's arguments are its defaults
(ssljax/objectives/redundancy_reduction.py), chosen for small data; their validation figures are
to be filled in by the measurement runs.
"""
from ssljax.base_config import parse_arg, sibling_experiment


def get_config(arg=None):
  c = sibling_experiment(__file__, "fmnist_infonce", arg)
  c.objective = "lejepa"
  c.wandb.name = "fmnist_lejepa"
  if "smoke" in parse_arg(arg):
    c.objectives.lejepa.projector_dims = (64, 64, 64)  # seconds, not minutes: the smoke run's point
  return c
