"""Vision Transformers: the reference parameter counts, the automatic patch size, stage names,
other input sizes through interpolated position embeddings, the keep-index MAE relies on, the
one-line errors, freeze-depth transfer's stage map, a few train steps of every objective on a tiny
ViT, and DINO's local crops rounded down to whole patches.

Counts and shapes are traced with ``jax.eval_shape`` (ViT-B is never allocated); real forward
passes use the tiny configuration ``TINY_VIT`` (2 blocks of width 32) with random weights drawn by
numpy on the traced shapes, which skips compiling Flax's initialisers.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import TINY_VIT, load_config, run_steps
from ssljax.config_checks import check_config
from ssljax.errors import UserError
from ssljax.evaluate.transfer import AFTER_STAGES, stage_params
from ssljax.models import build_encoder
from ssljax.models.__main__ import main as summary_main
from ssljax.models.summary import count_params, trace
from ssljax.models.vit import auto_patch_size, resize_position_embeddings
from ssljax.objectives import build_objective
from ssljax.train import loop
from test_device_equivalence import synthetic_dataset

# timm's vit_{tiny,small,base}_patch16_224 and big_vision's ViT-Ti/S/B/16, 1000-way head.
REFERENCE_COUNTS = {"vit_tiny": 5_717_416, "vit_small": 22_050_664, "vit_base": 86_567_656}
# Encoder only, at 28x28x1 (automatic patch 4, 49 tokens): the README's column.
FMNIST_COUNTS = {"vit_tiny": 5_351_808, "vit_small": 21_320_448, "vit_base": 85_108_224}


def random_variables(encoder, shape, seed=1):
  x = jnp.zeros((2, *shape))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.1, s.shape), s.dtype),
                      jax.eval_shape(encoder.init, jax.random.key(0), x))


@pytest.mark.parametrize("name", sorted(REFERENCE_COUNTS))
def test_parameter_counts_match_the_reference_implementations(name):
  assert count_params(name, (224, 224, 3), 1000) == REFERENCE_COUNTS[name]
  assert count_params(name, (224, 224, 3), 1000, patch_size=16) == REFERENCE_COUNTS[name]
  assert count_params(name, (28, 28, 1)) == FMNIST_COUNTS[name]


def test_summary_cli_prints_the_vit_tiny_reference_count(capsys):
  assert summary_main(["vit_tiny", "--input-shape", "224,224,3", "--num-classes", "1000"]) == 0
  out = capsys.readouterr().out.strip().splitlines()
  assert out[-1] == "total params: 5717416"
  assert any(line.split()[:3] == ["patch_embed", "196x192", "185,280"] for line in out)


def test_automatic_patch_size_and_token_counts():
  assert [auto_patch_size(s, s) for s in (224, 96, 64, 32, 28, 8)] == [16, 8, 8, 4, 4, 4]
  def stages(shape, **args):
    return trace(build_encoder("vit_tiny", {**TINY_VIT, **args}), shape).stages
  assert stages((28, 28, 1))["block_01"] == (1 + 49, 32)
  assert stages((32, 32, 3))["block_01"] == (1 + 64, 32)
  assert stages((224, 224, 3))["block_01"] == (1 + 196, 32)
  assert stages((28, 28, 1), patch_size=7)["block_01"] == (1 + 16, 32)


def test_stages_are_the_blocks_and_sort_in_network_order():
  t = trace(build_encoder("vit_tiny", {"depth": 12}), (28, 28, 1))
  assert list(t.stages) == sorted(t.stages) == [f"block_{i:02d}" for i in range(12)]
  assert t.features == (192,)
  deep = trace(build_encoder("vit_tiny", {**TINY_VIT, "depth": 101}), (8, 8, 1))
  assert list(deep.stages)[:2] == ["block_000", "block_001"]
  assert sorted(deep.stages) == list(deep.stages)


@pytest.mark.parametrize("patch, crop", [(7, 14), (4, 16)])
def test_a_smaller_crop_goes_through_a_vit_built_for_28x28(patch, crop):
  encoder = build_encoder("vit_tiny", {**TINY_VIT, "patch_size": patch})
  variables = random_variables(encoder, (28, 28, 1))
  stored = variables["params"]["patch_embed"]["pos_embed"]
  assert stored.shape == (28 // patch, 28 // patch, 32)
  x = jax.random.uniform(jax.random.key(0), (2, crop, crop, 1))
  features, stages = encoder.apply(variables, x)
  assert features.shape == (2, 32) and np.isfinite(features).all()
  assert stages["block_01"].shape == (2, 1 + (crop // patch) ** 2, 32)
  # The stored grid is resampled bilinearly, never re-created or changed.
  resized = resize_position_embeddings(stored, (crop // patch,) * 2)
  assert resized.shape == (crop // patch, crop // patch, 32)
  np.testing.assert_allclose(resized, jax.image.resize(stored, resized.shape, "bilinear",
                                                       antialias=False))
  np.testing.assert_array_equal(resize_position_embeddings(stored, stored.shape[:2]), stored)


def test_auto_patch_size_is_kept_from_the_built_network_on_other_sizes():
  """Built at 224 (patch 16), a 96x96 crop (DINO's local size) keeps patch 16: 6x6 tokens."""
  encoder = build_encoder("vit_tiny", TINY_VIT)
  shapes = jax.eval_shape(encoder.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
  _, stages = jax.eval_shape(lambda v: encoder.apply(v, jnp.zeros((1, 96, 96, 3))), shapes)
  assert stages["block_00"].shape == (1, 1 + 36, 32)


def test_keep_index_encodes_only_those_patches_with_their_positions():
  encoder = build_encoder("vit_tiny", TINY_VIT)
  variables = random_variables(encoder, (28, 28, 1))
  x = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))
  encode = jax.jit(lambda keep: encoder.apply(variables, x, keep, method="encode")[0])
  everything = encode(jnp.tile(jnp.arange(49), (2, 1)))
  full, _ = encoder.apply(variables, x, method="encode")
  np.testing.assert_allclose(everything, full, atol=1e-5)
  # Attention is permutation-equivariant and position lives in the tokens: a reordered keep
  # reorders the output tokens and leaves the class token unchanged.
  order = jnp.array([np.random.default_rng(0).permutation(49)] * 2)
  shuffled = encode(order)
  np.testing.assert_allclose(shuffled[:, 1:], jnp.take_along_axis(full[:, 1:], order[..., None], 1),
                             atol=1e-5)
  np.testing.assert_allclose(shuffled[:, 0], full[:, 0], atol=1e-5)
  assert encode(order[:, :12]).shape == (2, 13, 32)


def test_mean_pooling_reads_the_patch_tokens():
  encoder = build_encoder("vit_tiny", {**TINY_VIT, "pool": "mean"})
  variables = random_variables(encoder, (28, 28, 1))
  x = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))
  pooled, _ = encoder.apply(variables, x)
  tokens, _ = encoder.apply(variables, x, method="encode")
  np.testing.assert_allclose(pooled, tokens[:, 1:].mean(axis=1), atol=1e-6)


def test_a_patch_size_that_does_not_divide_the_image_is_one_clear_line():
  config = load_config("fmnist_infonce", "smoke")
  config.encoder, config.devices = "vit_tiny", 1
  with pytest.raises(UserError) as error:
    loop.build_experiment(config, synthetic_dataset(size=30))
  message = str(error.value)
  assert "\n" not in message
  assert message == ("image 30x30 does not split into 4x4 patches (vit_tiny patch_size 4, chosen "
                     "automatically); set --config.encoders.vit_tiny.patch_size to one dividing "
                     "both sides (2, 3, 5, 6, 10, 15)")


@pytest.mark.parametrize("key, value, message", [
    ("pool", "max", "encoders.vit_tiny.pool 'max' unknown; valid: cls, mean"),
    ("heads", 5, "encoders.vit_tiny.dim 32 is not divisible by heads 5"),
])
def test_bad_vit_arguments_name_the_key(key, value, message):
  encoder = build_encoder("vit_tiny", {**TINY_VIT, key: value})
  with pytest.raises(UserError, match=message):
    jax.eval_shape(encoder.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))


def test_transfer_freezes_the_embedding_with_the_first_block():
  encoder = build_encoder("vit_tiny", TINY_VIT)
  groups = stage_params(encoder, random_variables(encoder, (28, 28, 1)), (28, 28, 1))
  assert groups == {"block_00": ["block_00", "cls", "patch_embed"], "block_01": ["block_01"],
                    AFTER_STAGES: ["norm"]}


# --- every objective family on a tiny ViT ---------------------------------------------------------
OBJECTIVE_CONFIGS = {"infonce": "fmnist_infonce", "align_uniform": "fmnist_align_uniform",
                     "supervised": "fmnist_supervised", "autoencoder": "fmnist_autoencoder",
                     "denoising_autoencoder": "fmnist_denoising_autoencoder", "mae": "fmnist_mae",
                     "vicreg": "fmnist_vicreg", "barlow_twins": "fmnist_barlow_twins",
                     "lejepa": "fmnist_lejepa", "byol": "fmnist_byol", "simsiam": "fmnist_simsiam",
                     "moco_v3": "fmnist_moco_v3", "dino": "fmnist_dino"}


@pytest.mark.parametrize("objective", sorted(OBJECTIVE_CONFIGS))
def test_two_steps_of_each_objective_on_a_tiny_vit(objective):
  config = load_config(OBJECTIVE_CONFIGS[objective], "smoke")
  config.encoder, config.devices, config.batch_size = "vit_tiny", 2, 8
  config.encoders.vit_tiny.update(TINY_VIT)
  section = config.objectives[objective]
  for key, value in {"projector_dims": (32, 16), "predictor_hidden_dims": (32,), "latent_dim": 16,
                     "decoder_width": 8, "num_prototypes": 16}.items():
    if key in section:
      section[key] = value
  check_config(config)
  history, state = run_steps(config, synthetic_dataset(n=32), steps=2)
  assert int(state.step) == 2
  for metrics in history:
    assert np.isfinite(metrics["main/loss"]) and metrics["main/grad_norm"] > 0, metrics
  assert "online_probe/acc" in history[-1]


@pytest.mark.parametrize("patch, local", [(4, 12), (7, 14), (2, 14)])
def test_dino_rounds_its_local_crops_down_to_whole_patches_on_a_vit(patch, local):
  # 0.5 of 28 is 14: it splits into patches of 7 and 2, and becomes 12 (3 patches) for patch 4.
  config = load_config("fmnist_dino", "smoke")
  encoder = build_encoder("vit_tiny", {**TINY_VIT, "patch_size": patch})
  objective = build_objective(config, encoder, (28, 28, 1), 10, 10)
  assert objective.local_size == (local, local)
  cnn = build_objective(config, build_encoder("cnn", {"widths": (8, 16)}), (28, 28, 1), 10, 10)
  assert cnn.local_size == (14, 14)  # other encoders keep the exact fraction
