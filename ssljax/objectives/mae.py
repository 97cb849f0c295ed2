"""Masked autoencoder (He et al. 2022): hide a random ``mask_ratio`` of each image's patches, show
the Vision Transformer encoder only the visible ones, and have a light decoder predict the pixels of
every patch from the encoder's tokens plus mask tokens; the loss is the mean squared error on the
hidden patches only (``losses.mae``), optionally on per-patch normalised pixels (``norm_pix_loss``).

Only a ViT can skip tokens, so ``mae`` needs one (``vit_tiny`` / ``vit_small`` / ``vit_base``): any
other encoder is refused with the rest of the config problems, before data loads. The encoder sees
K = int(N * (1 - mask_ratio)) tokens (the authors' rounding) and no mask token, which is what makes
MAE cheap: at 0.75, a quarter of the encoder's work per image.

Masking draws one key per example (split from the step's key, like the views), so every image has
its own mask, every step a new one, and the masks do not depend on how the batch is split over
devices. Every image hides exactly N - K patches.

Evaluation reads the encoder on the whole, unmasked image (``Objective.features``), and so does the
online probe: its input is a second, gradient-free pass of the encoder over the unmasked view, so
the online figure estimates the offline probe's (when the online probe is off, XLA drops it).

Defaults, chosen for 28x28 images in 4x4 patches (49 tokens) and a ViT-Tiny (width 192): a 2-block,
128-wide decoder with 4 heads (head width 32, as the authors' 512-wide, 16-head one). The paper's
decoder (8 blocks x 512) is built for 196 tokens and ViT-L; the design point that matters is that
the decoder is narrower and much shallower than the encoder, so the encoder, not the decoder, has to
understand the image. Its cost here: 2 blocks over 50 tokens at width 128 are about a fifth of the
encoder's 12 blocks over 13 tokens at width 192. ``norm_pix_loss`` is off: the paper finds it
helps at 16x16 RGB patches, but a 4x4 grey patch of Fashion-MNIST is often near-flat background,
whose normalised target is amplified noise. Views are the authors' random-resized crop + flip.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ssljax.config_checks import number_problem
from ssljax.data import views
from ssljax.errors import UserError
from ssljax.models.transformer import MAEDecoder, patchify, unpatchify
from ssljax.models.vit import VisionTransformer, build_patch_size, check_patch_divides
from ssljax.objectives import losses
from ssljax.objectives.base import LossOutput, Objective, register_objective

VIT_ENCODERS = ("vit_tiny", "vit_small", "vit_base")
MASKED_FILL = 0.5  # grey where a patch is hidden, in the reconstruction figure


def visible_count(num_patches: int, mask_ratio: float) -> int:
  """K, the patches the encoder sees: int(N * (1 - ratio)), as the authors round (12 of 49 at
  0.75); the epsilon keeps 10 * (1 - 0.9) = 0.99999... from rounding down to 0."""
  return int(num_patches * (1 - mask_ratio) + 1e-9)


def random_masking(key: jax.Array, batch: int, num_patches: int, visible: int):
  """Per-example random masks: (keep (B, K) the visible patches' indices, restore (B, N) each
  patch's index in [visible..., hidden...], mask (B, N) float32, 1 = hidden). Each image sorts its
  own uniform noise (its key split from ``key``) and keeps the K patches with the smallest."""
  noise = jax.vmap(lambda k: jax.random.uniform(k, (num_patches,)))(jax.random.split(key, batch))
  shuffle = jnp.argsort(noise, axis=1)
  restore = jnp.argsort(shuffle, axis=1)
  return shuffle[:, :visible], restore, (restore >= visible).astype(jnp.float32)


def encoder_message(encoder_name: str) -> str:
  return (f"objective 'mae' needs a Vision Transformer encoder (it shows the encoder only the "
          f"visible patches), got {encoder_name!r}; use --config.encoder=vit_tiny (or "
          f"{', '.join(VIT_ENCODERS[1:])})")


@register_objective("mae")
class MaskedAutoencoder(Objective):
  default_config = {
      "mask_ratio": 0.75,          # the paper's: hiding most patches makes the task non-trivial
      "decoder_dim": 128,          # the defaults' reasons: see the module docstring
      "decoder_depth": 2,
      "decoder_heads": 4,
      "norm_pix_loss": False,
      "invariances": ("flip", "scale"),  # the authors' pretraining augmentation
  }

  @classmethod
  def check_args(cls, args):
    problems = [number_problem("mask_ratio", args["mask_ratio"], low=0, high=1, low_open=True,
                               high_open=True)]
    problems += [number_problem(key, args[key], integer=True, low=1)
                 for key in ("decoder_dim", "decoder_depth", "decoder_heads")]
    problems.append(views.invariances_problem("invariances", args["invariances"]))
    if not isinstance(args["norm_pix_loss"], bool):
      problems.append(f"norm_pix_loss must be True or False, got {args['norm_pix_loss']!r}")
    dim, heads = args["decoder_dim"], args["decoder_heads"]
    if not any(problems) and (dim % heads or dim % 4):
      problems.append(f"decoder_dim {dim} must be divisible by 4 (its sine-cosine position "
                      f"embeddings) and by decoder_heads {heads}")
    return [p for p in problems if p]

  @classmethod
  def encoder_problem(cls, encoder_name: str, encoder_cls: type) -> str | None:
    if not issubclass(encoder_cls, VisionTransformer):
      return encoder_message(encoder_name)
    return None

  def __init__(self, inputs, encoder):
    super().__init__(inputs, encoder)
    if not isinstance(encoder, VisionTransformer):
      raise UserError(encoder_message(type(encoder).__name__))
    h, w, c = self.image_shape
    self.patch = build_patch_size(encoder, h, w)
    check_patch_divides(type(encoder), h, w, self.patch, automatic=not encoder.patch_size)
    self.grid = (h // self.patch, w // self.patch)
    self.num_patches = self.grid[0] * self.grid[1]
    self.visible = visible_count(self.num_patches, self.args["mask_ratio"])
    if not 1 <= self.visible < self.num_patches:
      raise UserError(f"objectives.mae.mask_ratio {self.args['mask_ratio']} leaves {self.visible} "
                      f"of the {self.num_patches} patches visible; it must leave at least one "
                      "visible and one hidden")
    invariances = self.args["invariances"]
    self.view_specs = (views.ViewSpec(invariances),) if invariances else ()
    self.networks["decoder"] = MAEDecoder(
        self.grid, self.patch * self.patch * c, int(self.args["decoder_dim"]),
        int(self.args["decoder_depth"]), int(self.args["decoder_heads"]), dtype=encoder.dtype)

  def encode_visible(self, params, images, keep):
    """The encoder's normalised tokens (B, 1 + K, D) of the patches ``keep`` indexes."""
    tokens, _ = self.networks["encoder"].apply({"params": params["encoder"]}, images, keep,
                                               method="encode")
    return tokens

  def init(self, key, images):
    variables = super().init(key, images)
    keep, restore, _ = random_masking(jax.random.fold_in(key, 2), images.shape[0],
                                      self.num_patches, self.visible)
    tokens = self.encode_visible(variables["params"], images, keep)
    self.init_network(variables, "decoder", jax.random.fold_in(key, 1), tokens, restore)
    return variables

  def predict(self, params, images, key):
    """(pixel predictions (B, N, p*p*C), mask (B, N)) of ``images`` masked with ``key``."""
    keep, restore, mask = random_masking(key, images.shape[0], self.num_patches, self.visible)
    tokens = self.encode_visible(params, images, keep)
    predictions, _ = self.apply("decoder", params, {}, tokens, restore, train=False)
    return predictions, mask

  def loss(self, params, inputs):
    key_view, key_mask = jax.random.split(inputs.key)
    x = views.to_float(inputs.batch["images"])
    if self.view_specs:
      x = views.make_view(key_view, x, self.view_specs[0].invariances, self.inputs.views)
    predictions, mask = self.predict(params, x, key_mask)
    loss = losses.mae(predictions, patchify(x, self.patch), mask, self.args["norm_pix_loss"])
    # The online probe reads the whole view, as every evaluator does (module docstring).
    frozen = jax.lax.stop_gradient(params)
    (pooled, stages), _ = self.apply("encoder", frozen, inputs.batch_stats, x, train=False)
    return loss, LossOutput(inputs.batch_stats, {"loss": loss},
                            probe_input=self.probe_input(pooled, stages))

  def image_grids(self, variables, images):
    """reconstructions.png: each test image with its hidden patches greyed out, the
    reconstruction (predicted hidden patches, visible ones as they were: the paper's figure) and
    the original."""
    clean = views.to_float(jnp.asarray(images))

    @jax.jit
    def run(params, clean):
      predictions, mask = self.predict(params, clean, jax.random.PRNGKey(0))
      patches = patchify(clean, self.patch)
      if self.args["norm_pix_loss"]:  # predictions are normalised patches: undo with the truth's
        mean = jnp.mean(patches, axis=-1, keepdims=True)
        std = jnp.sqrt(jnp.var(patches, axis=-1, keepdims=True, ddof=1) + 1e-6)
        predictions = predictions * std + mean
      hidden = mask[..., None].astype(bool)
      masked = jnp.where(hidden, MASKED_FILL, patches)
      pasted = jnp.where(hidden, jnp.clip(predictions, 0, 1), patches)
      return (unpatchify(masked, self.patch, self.image_shape),
              unpatchify(pasted, self.patch, self.image_shape))

    masked, reconstruction = run(variables["params"], clean)
    rows = {"masked input": np.asarray(masked), "reconstruction": np.asarray(reconstruction),
            "original": np.asarray(clean)}
    return {"reconstructions.png": (rows, f"mae: reconstructions of test images "
                                          f"({self.args['mask_ratio']:.0%} of patches hidden)")}
