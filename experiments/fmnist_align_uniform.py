"""Alignment + uniformity (Wang & Isola 2020) on Fashion-MNIST with the small CNN: InfoNCE's views,
encoder and projector, with the loss align(z1, z2) + (uniform(z1) + uniform(z2)) / 2.

    python -m ssljax.pretrain --config=experiments/fmnist_align_uniform.py --workdir=runs/align_uniform
"""
from ssljax.base_config import base_config, parse_arg, smoke


def get_config(arg=None):
  c = base_config()
  c.objective = "align_uniform"
  c.encoder = "cnn"
  c.objectives.align_uniform.invariances = ("flip", "scale")  # the same views as fmnist_infonce
  c.objectives.align_uniform.alpha = 2.0
  c.objectives.align_uniform.t = 2.0
  c.views.scale = (0.4, 1.0)
  c.probe.features = "last_stage"
  c.batch_size = 256
  c.epochs = 3.0
  c.wandb.name = "fmnist_align_uniform"
  if "smoke" in parse_arg(arg):
    smoke(c)
  return c
