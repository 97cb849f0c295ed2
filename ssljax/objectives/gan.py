"""GAN (DCGAN, Radford et al. 2016): a generator turns noise into images of the data's size; a
discriminator, whose trunk is the configured encoder, tells them from real ones. The
representation probes evaluate is that trunk: ``features`` stays the encoder's.

Two players of the generic step, in alternation: the discriminator (encoder and ``disc_head``, plus
the harness's online probe; the run's optimizer) takes ``discriminator_steps`` steps, then the
generator (``generator``; its own Adam from this section, DCGAN's lr 2e-4 and beta1 0.5) takes
``generator_steps``; the generator uses the non-saturating loss. Each player's loss only reads the other's networks.

BatchNorm: real and fake images go through the discriminator as separate batches (as in DCGAN),
and only the real batch updates the trunk's running statistics, because the probes run the trunk on
real images. Each player keeps its own running statistics: the other player's passes through its
networks use batch statistics and leave them unchanged.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssljax.config_checks import number_problem
from ssljax.data import views
from ssljax.models.generative import ConvDecoder, DiscriminatorHead
from ssljax.objectives import losses
from ssljax.objectives.base import LossOutput, Objective, Player, register_objective, select_features


@register_objective("gan")
class GAN(Objective):
  default_config = {
      "latent_dim": 100,           # DCGAN's z
      "generator_width": 64,       # channels of the generator's last hidden map
      "generator_lr": 2e-4,        # the generator's Adam (DCGAN's settings)
      "generator_b1": 0.5,
      "discriminator_steps": 1,    # k1: discriminator steps per round
      "generator_steps": 1,        # k2: generator steps per round
      "disc_features": "pooled",   # trunk features the head reads: pooled | last_stage | a stage
  }

  @classmethod
  def check_args(cls, args):
    problems = [number_problem("latent_dim", args["latent_dim"], integer=True, low=1),
                number_problem("generator_width", args["generator_width"], integer=True, low=1),
                number_problem("generator_lr", args["generator_lr"], low=0, low_open=True),
                number_problem("generator_b1", args["generator_b1"], low=0, high=1,
                               high_open=True),
                number_problem("discriminator_steps", args["discriminator_steps"], integer=True,
                               low=1),
                number_problem("generator_steps", args["generator_steps"], integer=True, low=1)]
    return [p for p in problems if p]

  @classmethod
  def nonfinite_hints(cls, args):
    return [f"lower --config.objectives.{cls.name}.generator_lr (now {args['generator_lr']:g})"]

  def __init__(self, inputs, encoder):
    super().__init__(inputs, encoder)
    self.networks["disc_head"] = DiscriminatorHead()
    self.networks["generator"] = ConvDecoder(self.image_shape, int(self.args["generator_width"]))

  def init(self, key, images):
    variables = super().init(key, images)
    pooled, stages = self.features(variables, images)
    self.init_network(variables, "disc_head", jax.random.fold_in(key, 1),
                      select_features(pooled, stages, self.args["disc_features"]))
    self.init_network(variables, "generator", jax.random.fold_in(key, 2),
                      jnp.zeros((images.shape[0], int(self.args["latent_dim"]))))
    return variables

  def generator_optimizer(self) -> ml_collections.ConfigDict:
    """The run's optimizer's schedule with the generator's Adam settings and no weight decay."""
    opt = ml_collections.ConfigDict(self.inputs.optimizer.to_dict())
    opt.name, opt.lr, opt.b1, opt.weight_decay = (
        "adam", float(self.args["generator_lr"]), float(self.args["generator_b1"]), 0.0)
    return opt

  def players(self):
    discriminator = tuple(n for n in self.networks if n != "generator")  # trunk, head
    return [Player("discriminator", discriminator, self.discriminator_loss, self.inputs.optimizer,
                   int(self.args["discriminator_steps"])),
            Player("generator", ("generator",), self.generator_loss, self.generator_optimizer(),
                   int(self.args["generator_steps"]))]

  # --- networks --------------------------------------------------------------------------------
  def generate(self, params, batch_stats, key, num, *, train):
    """``num`` images in [0, 1] from z ~ N(0, I); returns (images, batch_stats)."""
    z = jax.random.normal(key, (num, int(self.args["latent_dim"])))
    logits, batch_stats = self.apply("generator", params, batch_stats, z, train=train)
    return jax.nn.sigmoid(logits), batch_stats

  def discriminate(self, params, batch_stats, images, *, train, key=None):
    """(real/fake logits (B,), batch_stats, trunk (pooled, stages))."""
    (pooled, stages), batch_stats = self.apply("encoder", params, batch_stats, images, train=train,
                                               key=key)
    logits, batch_stats = self.apply(
        "disc_head", params, batch_stats, select_features(pooled, stages, self.args["disc_features"]),
        train=train)
    return logits, batch_stats, (pooled, stages)

  # --- the two players' losses -----------------------------------------------------------------
  def discriminator_loss(self, params, inputs):
    batch_stats = inputs.batch_stats
    k_z, k_real, k_fake = jax.random.split(inputs.key, 3)
    real = views.to_float(inputs.batch["images"])
    fake, _ = self.generate(params, batch_stats, k_z, real.shape[0], train=True)
    real_logits, new_stats, (pooled, stages) = self.discriminate(params, batch_stats, real,
                                                                 train=True, key=k_real)
    fake_logits, _, _ = self.discriminate(params, batch_stats, jax.lax.stop_gradient(fake),
                                          train=True, key=k_fake)
    loss = losses.gan_discriminator_loss(real_logits, fake_logits)
    return loss, LossOutput(new_stats, {
        "loss": loss,
        "real_score": jnp.mean(jax.nn.sigmoid(real_logits)),  # D(x): 1 = sure it is real
        "fake_score": jnp.mean(jax.nn.sigmoid(fake_logits))},
        probe_input=self.probe_input(pooled, stages))

  def generator_loss(self, params, inputs):
    batch_stats = inputs.batch_stats
    k_z, k_disc = jax.random.split(inputs.key)
    fake, new_stats = self.generate(params, batch_stats, k_z, inputs.batch["images"].shape[0],
                                    train=True)
    fake_logits, _, _ = self.discriminate(params, batch_stats, fake, train=True, key=k_disc)
    loss = losses.gan_generator_loss(fake_logits)
    return loss, LossOutput(new_stats, {"loss": loss,
                                        "fake_score": jnp.mean(jax.nn.sigmoid(fake_logits))})

  # --- report ----------------------------------------------------------------------------------
  def image_grids(self, variables, images):
    """gan_samples.png: 8x8 generated samples (fixed noise), with real test images above."""
    samples, _ = jax.jit(lambda v: self.generate(v["params"], v["batch_stats"],
                                                 jax.random.PRNGKey(0), 64, train=False))(variables)
    samples = np.asarray(samples)
    rows = {"real": np.asarray(views.to_float(jnp.asarray(images[:8])))}
    rows.update({("samples" if r == 0 else " " * r): samples[8 * r:8 * r + 8] for r in range(8)})
    return {"gan_samples.png": (rows, "GAN: real test images, then samples")}
