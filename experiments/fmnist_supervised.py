"""Supervised cross-entropy on Fashion-MNIST's labels with the same small CNN and a linear head:
the upper reference line for the self-supervised objectives (same probe protocol on top).

    python -m ssljax.pretrain --config=experiments/fmnist_supervised.py --workdir=runs/supervised
"""
from ssljax.base_config import base_config, parse_arg, smoke


def get_config(arg=None):
  c = base_config()
  c.objective = "supervised"
  c.encoder = "cnn"
  c.objectives.supervised.invariances = ("flip",)
  c.probe.features = "last_stage"
  c.batch_size = 256
  c.epochs = 3.0
  c.wandb.name = "fmnist_supervised"
  if "smoke" in parse_arg(arg):
    smoke(c)
  return c
