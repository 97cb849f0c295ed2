"""Every objective behind one interface: the new losses against hand-computed values, the denoising
corruptions change exactly what they claim, a flip-only InfoNCE pair differs only by mirroring, the
decoder fits any image size, a supervised run without labels is refused, and each objective's smoke
run gives the same loss on 2 devices as on 1 (and draws its figure)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import initial_host_state, load_config, run_steps
from ssljax.data import corruptions, views
from ssljax.data.sources import Dataset, load_dataset
from ssljax.errors import UserError
from ssljax.evaluate.features import variables_of
from ssljax.evaluate.run import save_objective_plots
from ssljax.models.generative import ConvDecoder, upsampling_plan
from ssljax.objectives import losses
from ssljax.train import loop


@pytest.fixture(scope="module")
def fmnist():
  return load_dataset("fashion_mnist")


# --- losses --------------------------------------------------------------------------------------
def test_reconstruction_losses_hand_computed():
  predictions = jnp.array([[0.0, 1.0], [0.5, 0.5]])
  targets = jnp.array([[0.0, 0.0], [1.0, 0.5]])
  assert float(losses.mean_squared_error(predictions, targets)) == pytest.approx((1 + 0.25) / 4)
  # logit 0 -> p = 1/2: -log(1/2) whatever the target; logit ln 3 -> p = 3/4.
  logits = jnp.array([0.0, math.log(3.0)])
  expected = (math.log(2) + -(0.5 * math.log(0.75) + 0.5 * math.log(0.25))) / 2
  value = losses.binary_cross_entropy_with_logits(logits, jnp.array([1.0, 0.5]))
  assert float(value) == pytest.approx(expected, rel=1e-6)


def test_gan_losses_hand_computed():
  # D(x) = sigmoid(ln 3) = 3/4 on the real image, D(G(z)) = sigmoid(-ln 3) = 1/4 on the fake one.
  real, fake = jnp.array([math.log(3.0)]), jnp.array([-math.log(3.0)])
  assert float(losses.gan_discriminator_loss(real, fake)) == pytest.approx(
      -math.log(0.75) - math.log(1 - 0.25), rel=1e-6)
  # Non-saturating: -log D(G(z)), not log(1 - D(G(z))).
  assert float(losses.gan_generator_loss(fake)) == pytest.approx(-math.log(0.25), rel=1e-6)
  two = jnp.array([0.0, math.log(3.0)])  # mean over the batch
  assert float(losses.gan_generator_loss(two)) == pytest.approx(
      (math.log(2) - math.log(0.75)) / 2, rel=1e-6)


def test_align_uniform_combines_the_two_terms_with_weights():
  z1 = jnp.array([[1.0, 0.0], [-1.0, 0.0]])  # antipodal: uniform_loss(t=2) = -2 * 4 = -8
  z2 = jnp.array([[0.0, 1.0], [-1.0, 0.0]])  # first pair at squared distance 2, second identical
  # z2's pair: squared distance 2 -> uniform_loss = -4. align (alpha=2) = (2 + 0) / 2 = 1.
  assert float(losses.align_uniform(z1, z2)) == pytest.approx(1 + (-8 - 4) / 2, rel=1e-6)
  assert float(losses.align_uniform(z1, z2, align_weight=0.5, unif_weight=2.0)) == pytest.approx(
      0.5 + 2 * (-6), rel=1e-6)


# --- denoising corruptions -----------------------------------------------------------------------
def _images(c=1, n=64, size=16):
  return jax.random.uniform(jax.random.PRNGKey(0), (n, size, size, c), minval=0.05, maxval=0.95)


@pytest.mark.parametrize("channels", [1, 3])
def test_masking_only_zeroes_whole_pixels_at_rate_p(channels):
  x = _images(channels)
  y = corruptions.masking_noise(jax.random.PRNGKey(1), x, 0.3)
  changed = np.asarray(y != x)
  np.testing.assert_array_equal(np.asarray(y)[changed], 0.0)  # every change is to zero
  pixel_changed = changed.any(-1)
  assert (changed.all(-1) == pixel_changed).all()  # a pixel's channels go together
  assert pixel_changed.mean() == pytest.approx(0.3, abs=0.02)


def test_gaussian_changes_every_value_with_the_right_std():
  x = _images(3)
  y = corruptions.gaussian_noise(jax.random.PRNGKey(2), x, 0.2)
  noise = np.asarray(y - x)
  assert (noise != 0).all()
  assert noise.std() == pytest.approx(0.2, rel=0.02) and abs(noise.mean()) < 0.005


@pytest.mark.parametrize("channels", [1, 3])
def test_salt_and_pepper_only_sets_zero_or_one_at_rate_p(channels):
  x = _images(channels)
  y = np.asarray(corruptions.salt_and_pepper_noise(jax.random.PRNGKey(3), x, 0.2))
  changed = y != np.asarray(x)
  assert set(np.unique(y[changed])) == {0.0, 1.0}  # salt and pepper, nothing else
  pixel_changed = changed.any(-1)
  assert (changed.all(-1) == pixel_changed).all()
  assert pixel_changed.mean() == pytest.approx(0.2, abs=0.02)
  assert y[changed].mean() == pytest.approx(0.5, abs=0.05)  # a fair coin between 0 and 1


def test_unknown_noise_lists_valid_kinds():
  with pytest.raises(UserError, match="valid: gaussian, masking, salt_and_pepper"):
    corruptions.check_noise("speckle")


# --- views, decoder, labels ----------------------------------------------------------------------
def test_flip_only_infonce_views_differ_only_by_mirroring(fmnist):
  exp = loop.build_experiment(load_config("fmnist_infonce_flip", "smoke"), fmnist)
  images = jnp.asarray(fmnist.train_images[:32])
  v1, v2 = (np.asarray(v) for v in exp.objective.two_views(jax.random.PRNGKey(0), images))
  same = np.array([np.array_equal(a, b) for a, b in zip(v1, v2)])
  mirrored = np.array([np.array_equal(a, b[:, ::-1]) for a, b in zip(v1, v2)])
  assert (same | mirrored).all() and same.any() and mirrored.any()
  x = np.asarray(views.to_float(images))
  assert all(np.array_equal(v, a) or np.array_equal(v, a[:, ::-1]) for v, a in zip(v1, x))


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (8, 8, 1), (27, 20, 3), (3, 3, 1)])
def test_decoder_makes_images_of_the_data_size(shape):
  decoder = ConvDecoder(shape, width=8)
  z = jnp.zeros((2, 16))
  variables = jax.eval_shape(decoder.init, jax.random.PRNGKey(0), z)
  out = jax.eval_shape(lambda v: decoder.apply(v, z), variables)
  assert out.shape == (2, *shape)


def test_upsampling_plan_starts_like_dcgan():
  assert upsampling_plan(28, 28) == (2, 7, 7)
  assert upsampling_plan(32, 32) == (3, 4, 4)
  assert upsampling_plan(8, 8) == (1, 4, 4)


def test_supervised_without_labels_is_a_clear_error(fmnist):
  unlabelled = Dataset("unlabelled", fmnist.train_images[:64], None, fmnist.test_images[:16], None, 0)
  with pytest.raises(UserError, match="supervised.*has none"):
    loop.build_experiment(load_config("fmnist_supervised", "smoke"), unlabelled)


def test_denoising_autoencoder_corrupts_what_the_autoencoder_leaves_alone(fmnist):
  x = jnp.asarray(fmnist.train_images[:8], jnp.float32) / 255
  plain = loop.build_experiment(load_config("fmnist_autoencoder", "smoke"), fmnist).objective
  assert plain.corrupt(jax.random.PRNGKey(0), x) is x
  dae = loop.build_experiment(load_config("fmnist_denoising_autoencoder", "smoke"), fmnist).objective
  noisy = np.asarray(dae.corrupt(jax.random.PRNGKey(0), x))
  assert (noisy[noisy != np.asarray(x)] == 0).all() and (noisy != np.asarray(x)).any()


# --- every objective's smoke config trains sharded and draws its plot ---------------------------
# (That 1 and N devices give the same losses, gradients and statistics: test_device_equivalence.)
@pytest.mark.parametrize("name,plot", [
    ("fmnist_autoencoder", None),
    ("fmnist_denoising_autoencoder", "reconstructions.png"),
    ("fmnist_align_uniform", None),
    ("fmnist_supervised", None),
])
def test_smoke_config_trains_on_two_devices_and_draws_its_plot(name, plot, fmnist, tmp_path):
  config = load_config(name, "smoke")
  config.devices = 2
  history, state = run_steps(config, fmnist, 2, initial_host_state(config, fmnist))
  losses = [h["main/loss"] for h in history]
  assert len(losses) == 2 and np.isfinite(losses).all()
  if plot:
    exp = loop.build_experiment(config, fmnist)
    assert save_objective_plots(exp.objective, variables_of(state), tmp_path,
                                fmnist.test_images[:8]) == [plot]
    assert (tmp_path / plot).stat().st_size > 1000
