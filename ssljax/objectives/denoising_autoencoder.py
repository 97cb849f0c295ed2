"""Denoising autoencoder (Vincent et al. 2008): corrupt the input, reconstruct the *clean* image.
Reconstructing what the noise destroyed forces the encoder to model how pixels depend on each other
instead of copying them. The noise kinds are pure functions in ``ssljax.data.corruptions``.
"""
from __future__ import annotations

from ssljax.config_checks import number_problem
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

  @classmethod
  def check_args(cls, args):
    problems = super().check_args(args)
    if args["noise"] not in corruptions.CORRUPTIONS:
      problems.append(f"noise {args['noise']!r} unknown; valid: {', '.join(corruptions.CORRUPTIONS)}")
    for key in ("gaussian_sigma", "masking_prob", "salt_and_pepper_prob"):
      problem = number_problem(key, args[key], low=0, high=None if key == "gaussian_sigma" else 1)
      problems += [problem] if problem else []
    return problems

  def corrupt(self, key, images):
    return corruptions.corrupt(key, images, self.args["noise"], self.args)
