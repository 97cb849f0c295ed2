"""BYOL (Grill et al. 2020) on Fashion-MNIST with the quickstart's CNN and views: the online
prediction of each view regressed onto the EMA target's projection of the other,
byol(p1, z'2) + byol(p2, z'1), the target's momentum from 0.99 to 1 on BYOL's cosine.

    python -m ssljax.pretrain --config=experiments/fmnist_byol.py --workdir=runs/byol
    python -m ssljax.pretrain --config=experiments/fmnist_byol.py:smoke --workdir=/tmp/byol_smoke

Everything but the objective is the quickstart's (fmnist_infonce.py: encoder, views, optimizer,
budget, probes), so the pair compares the formulas. The objective's arguments are its defaults
(ssljax/objectives/teacher_student.py), chosen for small data; the heads' width was compared
with the paper's on the probe's validation split (figures there and in the README). The report
adds the EMA target's own probe (teacher_probe).
"""
from ssljax.base_config import parse_arg, quickstart_with_objective


def get_config(arg=None):
  c = quickstart_with_objective(__file__, "byol", arg)
  if "smoke" in parse_arg(arg):
    c.objectives.byol.predictor_hidden_dims = (64,)
  return c
