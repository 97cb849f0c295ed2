"""InfoNCE on Fashion-MNIST with the flip invariance only: the two views differ by a horizontal flip,
nothing else.
Everything else is the quickstart's (fmnist_infonce.py), so the pair isolates the invariance set.

    python -m ssljax.pretrain --config=experiments/fmnist_infonce_flip.py --workdir=runs/infonce_flip
"""
from ssljax.base_config import sibling_experiment


def get_config(arg=None):
  c = sibling_experiment(__file__, "fmnist_infonce", arg)
  c.objectives.infonce.invariances = ("flip",)
  c.wandb.name = "fmnist_infonce_flip"
  return c
