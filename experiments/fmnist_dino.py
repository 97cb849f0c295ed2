"""DINO (Caron et al. 2021) on Fashion-MNIST with the quickstart's CNN: a student distilled from its
EMA teacher through K = 1024 prototypes, the teacher's outputs centred and sharpened (temperature
0.04 -> 0.07), on 2 global 28x28 crops (teacher and student) and 6 local 14x14 crops (student
only).

    python -m ssljax.pretrain --config=experiments/fmnist_dino.py --workdir=runs/dino
    python -m ssljax.pretrain --config=experiments/fmnist_dino.py:smoke --workdir=/tmp/dino_smoke

The encoder, optimizer, budget and probes are the quickstart's (fmnist_infonce.py); the views are
DINO's multi-crop with the quickstart's invariances (flip, crop, jitter) on every crop. The
objective's arguments are its defaults (ssljax/objectives/dino.py), chosen for small data (K on
the probe's validation split: the figures are there). The report adds the teacher's own probe
(teacher_probe): the paper evaluates the teacher.
"""
from ssljax.base_config import parse_arg, quickstart_with_objective


def get_config(arg=None):
  c = quickstart_with_objective(__file__, "dino", arg)
  if "smoke" in parse_arg(arg):  # seconds: fewer crops and prototypes
    c.objectives.dino.update(num_local_crops=2, num_prototypes=64)
  return c
