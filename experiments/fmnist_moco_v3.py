"""MoCo v3 (Chen, Xie & He 2021) on Fashion-MNIST with the quickstart's CNN and views: each view's
query (online prediction) contrasted against the momentum encoder's keys of the other view over
the global batch, moco_v3(q1, k2, 0.2) + moco_v3(q2, k1, 0.2).

    python -m ssljax.pretrain --config=experiments/fmnist_moco_v3.py --workdir=runs/moco_v3
    python -m ssljax.pretrain --config=experiments/fmnist_moco_v3.py:smoke --workdir=/tmp/moco_smoke

Everything but the objective is the quickstart's (fmnist_infonce.py: encoder, views, optimizer,
budget, probes), so the pair compares the formulas. The objective's arguments are its defaults
(ssljax/objectives/teacher_student.py), chosen for small data; the heads' width was compared
with the paper's on the probe's validation split (figures there and in the README). The report
adds the momentum encoder's own probe.
"""
from ssljax.base_config import parse_arg, quickstart_with_objective


def get_config(arg=None):
  c = quickstart_with_objective(__file__, "moco_v3", arg)
  if "smoke" in parse_arg(arg):
    c.objectives.moco_v3.predictor_hidden_dims = (64,)
  return c
