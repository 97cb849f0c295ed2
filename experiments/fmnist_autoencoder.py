"""Autoencoder on Fashion-MNIST with the small CNN: encoder -> 128-d latent -> DCGAN-shaped decoder,
binary cross-entropy reconstruction (pixels are near-binary); plots/reconstructions.png shows it.

    python -m ssljax.pretrain --config=experiments/fmnist_autoencoder.py --workdir=runs/autoencoder
"""
from ssljax.base_config import base_config, parse_arg, smoke


def get_config(arg=None):
  c = base_config()
  c.objective = "autoencoder"
  c.encoder = "cnn"
  c.objectives.autoencoder.latent_dim = 128
  c.objectives.autoencoder.reconstruction = "bce"
  c.probe.features = "last_stage"
  c.batch_size = 256
  c.epochs = 3.0
  c.wandb.name = "fmnist_autoencoder"
  if "smoke" in parse_arg(arg):
    smoke(c)
  return c
