"""DCGAN on Fashion-MNIST: the small CNN is the discriminator's trunk (what the probes evaluate);
the generator makes 28x28x1 images; plots/gan_samples.png shows them.

Both players use DCGAN's Adam (lr 2e-4, beta1 0.5) at a constant rate: ``optimizer`` is the
discriminator's, ``objectives.gan.generator_*`` the generator's.

    python -m ssljax.pretrain --config=experiments/fmnist_gan.py --workdir=runs/gan
"""
from ssljax.base_config import base_config, parse_arg, smoke


def get_config(arg=None):
  c = base_config()
  c.objective = "gan"
  c.encoder = "cnn"
  c.objectives.gan.discriminator_steps = 1
  c.objectives.gan.generator_steps = 1
  c.objectives.gan.generator_lr = 2e-4
  c.objectives.gan.generator_b1 = 0.5
  c.optimizer.name = "adam"
  c.optimizer.lr = 2e-4
  c.optimizer.b1 = 0.5
  c.optimizer.weight_decay = 0.0
  c.optimizer.schedule = "constant"
  c.optimizer.warmup_steps = 0
  c.probe.features = "last_stage"
  c.batch_size = 256
  c.epochs = 3.0
  c.wandb.name = "fmnist_gan"
  if "smoke" in parse_arg(arg):
    smoke(c)
    c.optimizer.warmup_steps = 0
  return c
