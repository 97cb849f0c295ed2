"""Autoencoder: encoder -> latent code -> convolutional decoder back to the image; the reconstruction
error is the loss. The representation probes read is the encoder's, as for every objective.

The latent is a linear map of the encoder's ``latent_from`` features (``pooled`` by default: the
same vector every other objective trains) to ``latent_dim``; the decoder is DCGAN-shaped and sized
from the data (``models.generative.ConvDecoder``). The denoising autoencoder is this class with a
corruption of the input (``denoising_autoencoder.py``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ssljax.config_checks import number_problem
from ssljax.data import views
from ssljax.models.generative import Bottleneck, ConvDecoder
from ssljax.objectives import losses
from ssljax.objectives.base import LossOutput, Objective, register_objective, select_features

# reconstruction name -> loss(decoder logits, clean images in [0, 1])
RECONSTRUCTION_LOSSES = {
    "mse": lambda logits, images: losses.mean_squared_error(jax.nn.sigmoid(logits), images),
    "bce": losses.binary_cross_entropy_with_logits,
}


@register_objective("autoencoder")
class Autoencoder(Objective):
  default_config = {
      "latent_dim": 128,
      "reconstruction": "bce",   # bce | mse; BCE suits near-binary pixels such as Fashion-MNIST's
      "decoder_width": 64,       # channels of the decoder's last hidden map (DCGAN's 64)
      "latent_from": "pooled",   # encoder features the latent reads: pooled | last_stage | a stage
  }

  @classmethod
  def check_args(cls, args):
    problems = [number_problem("latent_dim", args["latent_dim"], integer=True, low=1),
                number_problem("decoder_width", args["decoder_width"], integer=True, low=1)]
    if args["reconstruction"] not in RECONSTRUCTION_LOSSES:
      problems.append(f"reconstruction {args['reconstruction']!r} unknown; valid: "
                      f"{', '.join(RECONSTRUCTION_LOSSES)}")
    if not isinstance(args["latent_from"], str) or not args["latent_from"]:
      problems.append(f"latent_from must be 'pooled', 'last_stage' or a stage name, got "
                      f"{args['latent_from']!r}")
    return [p for p in problems if p]

  def __init__(self, inputs, encoder):
    super().__init__(inputs, encoder)
    self.networks["bottleneck"] = Bottleneck(int(self.args["latent_dim"]))
    self.networks["decoder"] = ConvDecoder(self.image_shape, int(self.args["decoder_width"]))

  def init(self, key, images):
    variables = super().init(key, images)
    pooled, stages = self.features(variables, images)
    latent = self.init_network(variables, "bottleneck", jax.random.fold_in(key, 1),
                               select_features(pooled, stages, self.args["latent_from"]))
    self.init_network(variables, "decoder", jax.random.fold_in(key, 2), latent)
    return variables

  def corrupt(self, key, images):
    """The encoder's input made from the clean images; the plain autoencoder sees them as they are."""
    return images

  def reconstruct(self, params, batch_stats, inputs, *, train, key=None):
    """(decoder logits, batch_stats, encoder (pooled, stages)) for float images ``inputs``."""
    (pooled, stages), batch_stats = self.apply("encoder", params, batch_stats, inputs, train=train,
                                               key=key)
    latent, _ = self.apply("bottleneck", params, batch_stats,
                           select_features(pooled, stages, self.args["latent_from"]), train=train)
    logits, batch_stats = self.apply("decoder", params, batch_stats, latent, train=train)
    return logits, batch_stats, (pooled, stages)

  def loss(self, params, inputs):
    key_noise, key_net = jax.random.split(inputs.key)
    clean = views.to_float(inputs.batch["images"])
    logits, batch_stats, (pooled, stages) = self.reconstruct(
        params, inputs.batch_stats, self.corrupt(key_noise, clean), train=True, key=key_net)
    loss = RECONSTRUCTION_LOSSES[self.args["reconstruction"]](logits, clean)
    return loss, LossOutput(batch_stats, {"loss": loss},
                            probe_input=self.probe_input(pooled, stages))

  def image_grids(self, variables, images):
    """reconstructions.png: test images (and their corrupted version, if any) above what the
    decoder makes of them."""
    clean = views.to_float(jnp.asarray(images))
    inputs = self.corrupt(jax.random.PRNGKey(0), clean)

    @jax.jit
    def run(variables, inputs):
      logits, _, _ = self.reconstruct(variables["params"], variables["batch_stats"], inputs,
                                      train=False)
      return jax.nn.sigmoid(logits)

    rows = {"input": np.asarray(clean)}
    if inputs is not clean:
      rows["corrupted"] = np.asarray(inputs)
    rows["reconstruction"] = np.asarray(run(variables, inputs))
    return {"reconstructions.png": (rows, f"{self.name} reconstructions of test images")}
