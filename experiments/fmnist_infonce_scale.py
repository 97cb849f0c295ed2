"""InfoNCE on Fashion-MNIST with the scale invariance only: random-resized crops, never mirrored.
Everything else is the quickstart's (fmnist_infonce.py), so the pair isolates the invariance set.

    python -m ssljax.pretrain --config=experiments/fmnist_infonce_scale.py --workdir=runs/infonce_scale
"""
from ssljax.base_config import sibling_experiment


def get_config(arg=None):
  c = sibling_experiment(__file__, "fmnist_infonce", arg)
  c.objectives.infonce.invariances = ("scale",)
  c.wandb.name = "fmnist_infonce_scale"
  return c
