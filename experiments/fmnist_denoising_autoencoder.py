"""Denoising autoencoder on Fashion-MNIST: the autoencoder of fmnist_autoencoder.py, fed images with
25% of their pixels masked, trained to reconstruct the clean image. Other noise kinds:
``--config.objectives.denoising_autoencoder.noise=gaussian`` (``gaussian_sigma``) or
``salt_and_pepper`` (``salt_and_pepper_prob``).

    python -m ssljax.pretrain --config=experiments/fmnist_denoising_autoencoder.py --workdir=runs/dae
"""
from ssljax.base_config import base_config, parse_arg, smoke


def get_config(arg=None):
  c = base_config()
  c.objective = "denoising_autoencoder"
  c.encoder = "cnn"
  c.objectives.denoising_autoencoder.latent_dim = 128
  c.objectives.denoising_autoencoder.reconstruction = "bce"
  c.objectives.denoising_autoencoder.noise = "masking"
  c.objectives.denoising_autoencoder.masking_prob = 0.25
  c.probe.features = "last_stage"
  c.batch_size = 256
  c.epochs = 3.0
  c.wandb.name = "fmnist_denoising_autoencoder"
  if "smoke" in parse_arg(arg):
    smoke(c)
  return c
