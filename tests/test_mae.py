"""The masked autoencoder: the loss reads hidden patches only, masks hide exactly the ratio of every
image and are drawn per example and per step, the encoder never sees a hidden pixel, evaluation
and the online probe read the unmasked image, the reconstruction figure, and the one-line errors
(a CNN encoder, bad arguments). Device-count equivalence runs in test_device_equivalence.py (MAE on
the tiny ViT, 1 vs 8 devices) and the kill -9 resume in test_resume.py (with SSLJAX_SLOW=1).

Networks are the tiny ViT with random weights drawn by numpy on traced shapes: nothing here
compiles a train step.
"""
from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, TINY_VIT, load_config
from ssljax.config_checks import check_config
from ssljax.errors import UserError
from ssljax.models import build_encoder
from ssljax.models.transformer import patchify, unpatchify
from ssljax.objectives import LossInputs, build_objective, losses
from ssljax.objectives.mae import MASKED_FILL, random_masking, visible_count


def mae_objective(image_shape=(28, 28, 1), encoder="vit_tiny", **args):
  config = load_config("fmnist_mae", "smoke")
  config.objectives.mae.update(args)
  args = TINY_VIT if encoder.startswith("vit") else {}
  return build_objective(config, build_encoder(encoder, args), image_shape, 10, 10)


def random_variables(objective, images, seed=1):
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(objective.init, jax.random.key(0), images)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.1, s.shape), s.dtype), shapes)


def images(n=4, shape=(28, 28, 1), seed=0):
  return jax.random.uniform(jax.random.key(seed), (n, *shape))


# --- the loss ----------------------------------------------------------------------------------
def test_the_loss_ignores_predictions_on_visible_patches():
  rng = np.random.default_rng(0)
  predictions, targets = rng.normal(size=(2, 3, 5, 16)).astype(np.float32)
  mask = np.array([[1, 0, 0, 1, 1], [0, 1, 0, 0, 0], [1, 1, 1, 1, 0]], np.float32)
  expected = (((predictions - targets) ** 2).mean(-1) * mask).sum() / mask.sum()
  loss = losses.mae(predictions, targets, mask)
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  changed = np.where(mask[..., None] == 0, rng.normal(size=predictions.shape) * 100, predictions)
  assert losses.mae(changed, targets, mask) == loss
  assert losses.mae(np.where(mask[..., None] == 0, np.nan, predictions), targets, mask) == loss
  assert losses.mae(predictions, targets, mask, norm_pix_loss=True) == losses.mae(
      changed, targets, mask, norm_pix_loss=True)
  grads = jax.grad(losses.mae)(predictions, targets, mask)
  assert (np.asarray(grads)[mask == 0] == 0).all() and (np.asarray(grads)[mask == 1] != 0).any()


def test_norm_pix_targets_are_per_patch_with_the_unbiased_variance():
  patches = np.random.default_rng(0).uniform(size=(2, 3, 16)).astype(np.float32)
  mean = patches.mean(-1, keepdims=True)
  expected = (patches - mean) / np.sqrt(patches.var(-1, ddof=1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(losses.normalize_patches(patches), expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(losses.normalize_patches(np.zeros((1, 1, 16))), 0)  # flat patch


def test_patchify_unpatchify_round_trip_and_layout():
  x = images(2, (8, 12, 3))
  patches = patchify(x, 4)
  assert patches.shape == (2, 6, 48)
  np.testing.assert_array_equal(patches[:, 4].reshape(2, 4, 4, 3), x[:, 4:8, 4:8])  # row-major
  np.testing.assert_array_equal(unpatchify(patches, 4, (8, 12, 3)), x)


# --- masking -----------------------------------------------------------------------------------
def test_visible_count_rounds_as_the_authors_do():
  assert [visible_count(n, r) for n, r in [(49, 0.75), (64, 0.75), (196, 0.75), (10, 0.9)]] == \
      [12, 16, 49, 1]


def test_the_mask_ratio_is_exact_for_every_image():
  keep, restore, mask = random_masking(jax.random.key(0), 64, 49, visible_count(49, 0.75))
  keep, restore, mask = map(np.asarray, (keep, restore, mask))
  assert keep.shape == (64, 12) and (mask.sum(axis=1) == 37).all()
  for row in range(64):
    assert len(set(keep[row])) == 12 and (mask[row, keep[row]] == 0).all()
    hidden = np.flatnonzero(mask[row])
    # restore puts [visible..., hidden...] back in patch order: what the decoder relies on.
    order = np.concatenate([keep[row], hidden[np.argsort(restore[row, hidden])]])
    np.testing.assert_array_equal(order[restore[row]], np.arange(49))


def test_masks_are_independent_per_example_and_per_step():
  step_keys = [jax.random.fold_in(jax.random.key(0), step) for step in (0, 1)]
  masks = [np.asarray(random_masking(k, 32, 49, 12)[2]) for k in step_keys]
  assert len({m.tobytes() for m in masks[0]}) == 32  # every image its own mask
  assert not (masks[0] == masks[1]).all(axis=1).any()  # and a new one next step
  # Independent: the chance that two patches are both hidden is the sampling-without-replacement
  # one, (37/49)(36/48) = 0.566, with no correlation across examples.
  both = (masks[0][:, :, None] * masks[0][:, None, :]).mean(0)
  off_diagonal = both[~np.eye(49, dtype=bool)]
  assert abs(off_diagonal.mean() - 37 / 49 * 36 / 48) < 0.01


# --- the objective -----------------------------------------------------------------------------
def test_the_encoder_never_sees_hidden_patches():
  objective = mae_objective()
  x = images()
  variables = random_variables(objective, x)
  key = jax.random.key(3)
  keep, restore, mask = random_masking(key, 4, 49, objective.visible)
  noise = jnp.where(unpatchify(mask[..., None] * jnp.ones((1, 1, 16)), 4, (28, 28, 1)) > 0,
                    images(seed=9), x)  # new pixels in every hidden patch, the visible ones kept
  assert objective.visible == 12 and not np.allclose(noise, x)
  tokens = objective.encode_visible(variables["params"], x, keep)
  assert tokens.shape == (4, 1 + 12, 32)
  np.testing.assert_array_equal(tokens, objective.encode_visible(variables["params"], noise, keep))
  predictions, predicted_mask = objective.predict(variables["params"], x, key)
  assert predictions.shape == (4, 49, 16)
  np.testing.assert_array_equal(predicted_mask, mask)
  np.testing.assert_array_equal(predictions, objective.predict(variables["params"], noise, key)[0])


def test_evaluation_and_the_online_probe_read_the_unmasked_image():
  objective = mae_objective(invariances=())
  x = images()
  variables = random_variables(objective, x)
  batch = {"images": (x * 255).astype(jnp.uint8), "labels": jnp.arange(4)}
  loss, out = objective.loss(variables["params"], LossInputs(
      batch, jax.random.key(0), jnp.zeros((), jnp.int32), {}, {}, {}))
  pooled, stages = objective.features(variables, batch["images"].astype(jnp.float32) / 255)
  np.testing.assert_allclose(out.probe_input, pooled, atol=1e-6)
  assert stages["block_01"].shape == (4, 50, 32)  # every patch
  assert np.isfinite(loss) and set(out.metrics) == {"loss"}
  other, _ = objective.loss(variables["params"], LossInputs(
      batch, jax.random.key(1), jnp.zeros((), jnp.int32), {}, {}, {}))
  assert other != loss  # another step's key, another mask


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_the_reconstruction_figure_shows_masked_input_reconstruction_and_original(norm_pix_loss):
  objective = mae_objective(norm_pix_loss=norm_pix_loss)
  test_images = np.asarray(images(3) * 255).astype(np.uint8)
  variables = random_variables(objective, jnp.asarray(test_images, jnp.float32))
  (name, (rows, title)), = objective.image_grids(variables, test_images).items()
  assert name == "reconstructions.png" and "75% of patches hidden" in title
  assert list(rows) == ["masked input", "reconstruction", "original"]
  original = patchify(rows["original"], 4)
  hidden = (patchify(rows["masked input"], 4) == MASKED_FILL).all(-1)
  assert (hidden.sum(-1) == 37).all()
  np.testing.assert_array_equal(patchify(rows["masked input"], 4)[~hidden], original[~hidden])
  np.testing.assert_array_equal(patchify(rows["reconstruction"], 4)[~hidden], original[~hidden])
  assert (rows["reconstruction"] >= 0).all() and (rows["reconstruction"] <= 1).all()


# --- errors ------------------------------------------------------------------------------------
def test_mae_with_a_cnn_is_refused_before_data_loads():
  config = load_config("fmnist_mae", "smoke")
  config.encoder, config.dataset = "cnn", "npz:/nonexistent.npz"
  message = ("objective 'mae' needs a Vision Transformer encoder (it shows the encoder only the "
             "visible patches), got 'cnn'; use --config.encoder=vit_tiny (or vit_small, vit_base)")
  with pytest.raises(UserError) as error:
    check_config(config)
  assert str(error.value) == message
  with pytest.raises(UserError, match="needs a Vision Transformer encoder"):
    mae_objective(encoder="cnn")


def test_mae_with_a_cnn_on_the_command_line_is_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "ssljax.pretrain", "--config=experiments/fmnist_mae.py:smoke",
       "--config.encoder=resnet18", f"--workdir={tmp_path / 'run'}"], cwd=ROOT, text=True,
      capture_output=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
  assert result.returncode == 2 and "Traceback" not in result.stderr
  lines = result.stderr.strip().splitlines()
  assert lines == ["error: objective 'mae' needs a Vision Transformer encoder (it shows the "
                   "encoder only the visible patches), got 'resnet18'; use "
                   "--config.encoder=vit_tiny (or vit_small, vit_base)"]


@pytest.mark.parametrize("key, value, message", [
    ("mask_ratio", 1.0, "objectives.mae.mask_ratio must be in (0, 1), got 1.0"),
    ("mask_ratio", 0, "objectives.mae.mask_ratio must be in (0, 1), got 0"),
    ("decoder_depth", 0, "objectives.mae.decoder_depth must be >= 1, got 0"),
    ("decoder_dim", 30, "objectives.mae.decoder_dim 30 must be divisible by 4"),
    ("invariances", ("rotate",), "objectives.mae.invariances"),
])
def test_bad_arguments_name_the_key(key, value, message):
  config = load_config("fmnist_mae", "smoke")
  config.objectives.mae[key] = value
  with pytest.raises(UserError) as error:
    check_config(config)
  assert message in str(error.value)


def test_a_ratio_that_hides_every_patch_or_none_is_refused():
  with pytest.raises(UserError, match=r"mask_ratio 0.99 leaves 0 of the 49 patches visible"):
    mae_objective(mask_ratio=0.99)
  with pytest.raises(UserError, match=r"mask_ratio 1e-12 leaves 49 of the 49 patches visible"):
    mae_objective(mask_ratio=1e-12)  # rounds to no hidden patch


def test_a_patch_size_that_does_not_divide_the_image_is_refused():
  with pytest.raises(UserError, match=r"^image 30x30 does not split into 4x4 patches \(vit_tiny "
                                      r"patch_size 4, chosen automatically\); set "
                                      r"--config.encoders.vit_tiny.patch_size"):
    mae_objective(image_shape=(30, 30, 1))
