"""Denoising autoencoder (Vincent et al. 2008): corrupt the input, reconstruct the *clean* image.
Reconstructing what the noise destroyed forces the encoder to model how pixels depend on each other
instead of copying them. The noise kinds are pure functions in ``ssljax.data.corruptions``.
"""
from __future__ import annotations

from ssljax.data import corruptions
from ssljax.objectives.autoencoder import Autoencoder
from ssljax.objectives.base import register_objective


@register_objective("denoising_autoencoder")
class DenoisingAutoencoder(Autoencoder):
  default_config = {
      **Autoencoder.default_config,
      "noise": "masking",          # gaussian | masking | salt_and_pepper
      # Levels from the ranges Vincent et al. (2010) explored on MNIST variants; only the chosen
      # kind's level is read.
      "gaussian_sigma": 0.3,
      "masking_prob": 0.25,
      "salt_and_pepper_prob": 0.1,
  }

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    corruptions.check_noise(self.args["noise"])

  def corrupt(self, key, images):
    return corruptions.corrupt(key, images, self.args["noise"], self.args)
