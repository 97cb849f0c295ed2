"""VICReg, Barlow Twins and LeJEPA (issue 13): each pure loss against small hand-computed cases and
a numpy reference loop written here from the papers' definitions, the large loss each paper
predicts for collapsed embeddings, SIGReg's value on a Gaussian sample against its expectation,
every bad argument's one-line error, and the objectives' own metrics in a real train step.
Device-count equivalence is ``test_device_equivalence.py``'s; kill -9 resume, ``test_resume.py``'s.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config, run_steps
from ssljax.config_checks import check_config
from ssljax.errors import UserError
from ssljax.models import ENCODERS
from ssljax.objectives import OBJECTIVES, losses, objective_inputs

RNG = np.random.default_rng(0)


# --- numpy references: loops over the definitions, nothing shared with the implementation --------
def vicreg_reference(z1, z2, sim=25.0, std=25.0, cov=1.0):
  n, d = z1.shape
  invariance = sum((z1[i, k] - z2[i, k]) ** 2 for i in range(n) for k in range(d)) / (n * d)
  variance, covariance = 0.0, 0.0
  for z in (z1, z2):
    mean = [sum(z[i, k] for i in range(n)) / n for k in range(d)]
    c = [[sum((z[i, a] - mean[a]) * (z[i, b] - mean[b]) for i in range(n)) / (n - 1)
          for b in range(d)] for a in range(d)]
    variance += sum(max(0.0, 1 - math.sqrt(c[k][k] + 1e-4)) for k in range(d)) / d / 2
    covariance += sum(c[a][b] ** 2 for a in range(d) for b in range(d) if a != b) / d
  return sim * invariance + std * variance + cov * covariance


def barlow_reference(z1, z2, lambd=0.0051):
  n, d = z1.shape

  def standardised(z, k):
    mean = sum(z[:, k]) / n
    var = sum((z[i, k] - mean) ** 2 for i in range(n)) / n  # biased, as BatchNorm
    return [(z[i, k] - mean) / math.sqrt(var + 1e-5) for i in range(n)]

  a = [standardised(z1, k) for k in range(d)]
  b = [standardised(z2, k) for k in range(d)]
  loss = 0.0
  for i in range(d):
    for j in range(d):
      c = sum(a[i][s] * b[j][s] for s in range(n)) / n
      loss += (1 - c) ** 2 if i == j else lambd * c ** 2
  return loss


def sigreg_reference(z, directions):
  n = z.shape[0]
  t = np.linspace(-5, 5, 17)
  total = 0.0
  for m in range(directions.shape[1]):
    a = directions[:, m] / np.linalg.norm(directions[:, m])
    x = z @ a
    integrand = [abs(np.mean(np.exp(1j * tk * x)) - math.exp(-tk ** 2 / 2)) ** 2
                 * math.exp(-tk ** 2 / 2) for tk in t]
    trapezoid = sum((t[k + 1] - t[k]) * (integrand[k] + integrand[k + 1]) / 2
                    for k in range(len(t) - 1))
    total += n * trapezoid
  return total / directions.shape[1]


def close(value, expected, rel=1e-5):
  assert float(value) == pytest.approx(expected, rel=rel, abs=1e-6)


# --- VICReg --------------------------------------------------------------------------------------
def test_vicreg_hand_computed_two_images():
  z1 = np.array([[0.0, 0.0], [2.0, 0.0]])
  z2 = np.array([[0.0, 0.0], [2.0, 2.0]])
  # invariance: one difference of -2 among 4 entries -> 4 / 4 = 1.
  # variance: z1's stds sqrt(2 + 1e-4), sqrt(1e-4) = 0.01 -> hinges 0, 0.99 -> mean 0.495; z2's
  # stds are both sqrt(2 + 1e-4) -> 0. Averaged: 0.2475.
  # covariance: z1's off-diagonal is 0; z2's is 2 and 2 -> (4 + 4) / D = 4. Summed: 4.
  invariance, variance, covariance = losses.vicreg_terms(jnp.array(z1), jnp.array(z2))
  close(invariance, 1.0)
  close(variance, 0.2475, rel=1e-4)
  close(covariance, 4.0)
  close(losses.vicreg(jnp.array(z1), jnp.array(z2)), 25 * 1.0 + 25 * 0.2475 + 4.0, rel=1e-4)
  close(losses.vicreg(jnp.array(z1), jnp.array(z2), 1.0, 2.0, 3.0), 1.0 + 2 * 0.2475 + 12.0,
        rel=1e-4)


@pytest.mark.parametrize("coeffs", [(25.0, 25.0, 1.0), (1.0, 0.5, 10.0)])
def test_vicreg_matches_the_numpy_loop(coeffs):
  z1, z2 = RNG.normal(size=(6, 5)) * 0.7, RNG.normal(size=(6, 5)) * 1.3
  close(losses.vicreg(jnp.array(z1), jnp.array(z2), *coeffs), vicreg_reference(z1, z2, *coeffs),
        rel=1e-4)


def test_vicreg_of_collapsed_embeddings_is_the_variance_hinge():
  point = RNG.normal(size=(1, 16))
  z = jnp.array(np.repeat(point, 8, axis=0))  # every image, both views: the same embedding
  invariance, variance, covariance = losses.vicreg_terms(z, z)
  close(invariance, 0.0)
  close(covariance, 0.0)
  close(variance, 1 - math.sqrt(1e-4))  # every std is sqrt(0 + 1e-4): hinge 0.99 per dimension
  close(losses.vicreg(z, z), 25.0 * 0.99)  # ~ std_coeff: the term that stops the collapse


# --- Barlow Twins --------------------------------------------------------------------------------
def test_barlow_twins_hand_computed_two_images():
  z1 = jnp.array([[0.0, 1.0], [2.0, 3.0]])  # both columns standardise to (-1, 1)
  z2 = jnp.array([[1.0, 0.0], [0.0, 4.0]])  # columns standardise to (1, -1) and (-1, 1)
  # c = z1n^T z2n / 2 = [[-1, 1], [-1, 1]]: on-diagonal (1 + 1)^2 + 0 = 4; off-diagonal 1 + 1 = 2.
  on_diagonal, off_diagonal = losses.barlow_twins_terms(z1, z2)
  close(on_diagonal, 4.0, rel=1e-4)
  close(off_diagonal, 2.0, rel=1e-4)
  close(losses.barlow_twins(z1, z2), 4.0 + 0.0051 * 2.0, rel=1e-4)
  close(losses.barlow_twins(z1, z2, lambd=0.5), 5.0, rel=1e-4)


@pytest.mark.parametrize("lambd", [0.0051, 0.2])
def test_barlow_twins_matches_the_numpy_loop(lambd):
  z1, z2 = RNG.normal(size=(7, 4)) * 3 + 1, RNG.normal(size=(7, 4))
  close(losses.barlow_twins(jnp.array(z1), jnp.array(z2), lambd), barlow_reference(z1, z2, lambd),
        rel=1e-4)


def test_barlow_twins_of_collapsed_embeddings_is_d():
  z = jnp.array(np.repeat(RNG.normal(size=(1, 12)), 8, axis=0))
  on_diagonal, off_diagonal = losses.barlow_twins_terms(z, z)
  close(on_diagonal, 12.0)  # standardised to 0: c = 0, every (1 - c_ii)^2 is 1
  close(off_diagonal, 0.0)
  close(losses.barlow_twins(z, z), 12.0)


# --- SIGReg and LeJEPA ---------------------------------------------------------------------------
def test_sigreg_hand_computed_for_embeddings_at_the_origin():
  # Every projection is 0: the empirical characteristic function is 1, so the statistic is
  # N * trapezoid of (1 - exp(-t^2/2))^2 exp(-t^2/2) on the 17 knots, whatever the direction.
  t = np.linspace(-5, 5, 17)
  f = (1 - np.exp(-t ** 2 / 2)) ** 2 * np.exp(-t ** 2 / 2)
  expected = 4 * sum(0.625 * (f[k] + f[k + 1]) / 2 for k in range(16))  # knots 10/16 apart
  directions = jnp.array(RNG.normal(size=(3, 5)))
  close(losses.sigreg(jnp.zeros((4, 3)), directions), expected)
  # The exact integral is sqrt(2 pi) - 2 sqrt(pi) + sqrt(2 pi / 3) = 0.4088 per sample.
  assert expected / 4 == pytest.approx(0.4088, abs=2e-3)


def test_sigreg_matches_the_numpy_loop_and_normalises_the_directions():
  z, directions = RNG.normal(size=(9, 4)) * 1.5 + 0.3, RNG.normal(size=(4, 6))
  value = losses.sigreg(jnp.array(z), jnp.array(directions))
  close(value, sigreg_reference(z, directions), rel=1e-4)
  close(losses.sigreg(jnp.array(z), jnp.array(directions * 7.0)), float(value), rel=1e-5)
  # Leading axes (views) are tested separately and averaged.
  stacked = losses.sigreg(jnp.array(np.stack([z, 2 * z])), jnp.array(directions))
  close(stacked, (sigreg_reference(z, directions) + sigreg_reference(2 * z, directions)) / 2,
        rel=1e-4)


def test_sigreg_is_near_its_expectation_on_a_gaussian_and_large_when_collapsed():
  # For N iid standard normal samples E[N |ecf(t) - phi(t)|^2] = 1 - exp(-t^2), whose weighted
  # integral is sqrt(2 pi) - sqrt(2 pi / 3) = 1.059; a collapsed batch scales with N instead.
  directions = losses.sigreg_directions(jax.random.PRNGKey(0), 32, 64)
  gaussian = jax.random.normal(jax.random.PRNGKey(1), (512, 32))
  assert float(losses.sigreg(gaussian, directions)) == pytest.approx(1.059, abs=0.3)
  collapsed = jnp.broadcast_to(gaussian[:1], gaussian.shape)
  assert float(losses.sigreg(collapsed, directions)) > 50 * float(losses.sigreg(gaussian, directions))


def test_lejepa_hand_computed_invariance_and_the_weighting():
  views = jnp.array([[[0.0, 0.0]], [[2.0, 0.0]]])  # 2 views of 1 image; centre (1, 0)
  directions = jnp.array(RNG.normal(size=(2, 3)))
  invariance, regulariser = losses.lejepa_terms(views, directions)
  close(invariance, (1 + 0 + 1 + 0) / 4)
  close(regulariser, (sigreg_reference(np.zeros((1, 2)), np.asarray(directions))
                      + sigreg_reference(np.array([[2.0, 0.0]]), np.asarray(directions))) / 2,
        rel=1e-4)
  close(losses.lejepa(views, directions), 0.95 * 0.5 + 0.05 * float(regulariser))
  close(losses.lejepa(views, directions, lambd=1.0), float(regulariser))
  # With a third, local view the centre is the mean of the first num_global (global) views only.
  three = jnp.concatenate([views, jnp.array([[[4.0, 0.0]]])])
  invariance, _ = losses.lejepa_terms(three, directions, num_global=2)
  close(invariance, (1 + 1 + 9) / 6)


def test_collapse_watch_reads_zero_collapsed_and_one_over_sqrt_d_healthy():
  gaussian = jax.random.normal(jax.random.PRNGKey(2), (4096, 64))
  assert float(losses.normalized_std(gaussian)) == pytest.approx(1 / 8, rel=0.05)
  assert float(losses.normalized_std(jnp.broadcast_to(gaussian[:1], (64, 64)))) < 1e-6


# --- the objectives ------------------------------------------------------------------------------
def _config(objective, **args):
  config = load_config(f"fmnist_{objective}", "smoke")
  config.objectives[objective].update(args)
  return config


@pytest.mark.parametrize("objective,args,message", [
    ("vicreg", {"sim_coeff": -1.0}, "objectives.vicreg.sim_coeff must be >= 0, got -1.0"),
    ("vicreg", {"std_coeff": -25.0}, "objectives.vicreg.std_coeff must be >= 0, got -25.0"),
    ("vicreg", {"cov_coeff": float("nan")}, "objectives.vicreg.cov_coeff must be a number"),
    ("vicreg", {"sim_coeff": 0.0, "std_coeff": 0.0, "cov_coeff": 0},
     "objectives.vicreg.sim_coeff, std_coeff and cov_coeff are all 0"),
    ("vicreg", {"projector_dims": (64, 0)}, "objectives.vicreg.projector_dims must be a non-empty"),
    ("barlow_twins", {"lambd": -0.1}, "objectives.barlow_twins.lambd must be >= 0, got -0.1"),
    ("barlow_twins", {"invariances": ("flip", "spin")}, "objectives.barlow_twins.invariances"),
    ("lejepa", {"lambd": 1.5}, r"objectives.lejepa.lambd must be in \[0, 1\], got 1.5"),
    ("lejepa", {"num_directions": 0}, "objectives.lejepa.num_directions must be >= 1, got 0"),
    ("lejepa", {"projector_dims": ()}, "objectives.lejepa.projector_dims must be a non-empty"),
])
def test_each_bad_argument_is_a_one_line_config_error(objective, args, message):
  with pytest.raises(UserError, match=message) as error:
    check_config(_config(objective, **args))
  assert "\n" not in str(error.value)


@pytest.mark.parametrize("objective,key,value,message", [
    ("vicreg", "std_coeff", "25", "std_coeff must be a number, got '25' (str)"),
    ("barlow_twins", "lambd", True, "lambd must be a number, got True (bool)"),
    ("lejepa", "num_directions", 2.5, "num_directions must be an integer, got 2.5 (float)"),
    ("lejepa", "directions", 8, "directions: no such argument; 'lejepa' accepts: invariances, "
     "lambd, num_directions, projector_dims"),
])
def test_mistyped_and_unknown_arguments_from_a_json_config(objective, key, value, message):
  # A config read back from JSON (a sweep, an evaluation) is not type-checked by ConfigDict.
  from ssljax.objectives.base import resolve_args
  _, problems = resolve_args(OBJECTIVES[objective], {key: value})
  assert problems == [message]


@pytest.mark.parametrize("objective", ["vicreg", "barlow_twins", "lejepa"])
def test_a_batch_of_one_image_is_refused_and_hints_name_the_arguments(objective):
  config = _config(objective)
  config.batch_size = 1
  cls = OBJECTIVES[objective]
  encoder = ENCODERS["cnn"](widths=(8, 16))
  with pytest.raises(UserError, match=f"batch_size must be >= 2 for objective '{objective}'"):
    cls(objective_inputs(config, (8, 8, 1), 10, 8), encoder)
  hints = " ".join(cls.nonfinite_hints(dict(cls.default_config)))
  assert f"--config.objectives.{objective}." in hints


@pytest.mark.parametrize("objective,pure", [
    ("vicreg", lambda z1, z2: losses.vicreg(z1, z2, 25.0, 25.0, 1.0)),
    ("barlow_twins", lambda z1, z2: losses.barlow_twins(z1, z2, 0.0051)),
])
def test_the_objectives_pair_loss_is_the_pure_loss(objective, pure):
  config = _config(objective)
  obj = OBJECTIVES[objective](objective_inputs(config, (8, 8, 1), 10, 8), ENCODERS["cnn"]())
  z1, z2 = jnp.array(RNG.normal(size=(8, 6))), jnp.array(RNG.normal(size=(8, 6)))
  loss, metrics = obj.pair_loss(z1, z2, jax.random.PRNGKey(0))
  close(loss, float(pure(z1, z2)))
  assert all(np.isfinite(float(v)) for v in metrics.values())


def test_lejepa_draws_its_directions_from_the_key_it_is_given():
  config = _config("lejepa", num_directions=8)
  obj = OBJECTIVES["lejepa"](objective_inputs(config, (8, 8, 1), 10, 8), ENCODERS["cnn"]())
  z1, z2 = jnp.array(RNG.normal(size=(16, 4))), jnp.array(RNG.normal(size=(16, 4)))
  first, _ = obj.pair_loss(z1, z2, jax.random.PRNGKey(3))
  again, _ = obj.pair_loss(z1, z2, jax.random.PRNGKey(3))
  other, metrics = obj.pair_loss(z1, z2, jax.random.PRNGKey(4))
  assert float(first) == float(again) and float(first) != float(other)
  directions = losses.sigreg_directions(jax.random.PRNGKey(4), 4, 8)
  close(other, float(losses.lejepa(jnp.stack([z1, z2]), directions, 0.05)))
  close(metrics["sigreg"], float(losses.sigreg(jnp.stack([z1, z2]), directions)))


def test_a_lejepa_train_step_logs_its_terms_and_the_collapse_watch():
  # Flips only: random crops and jitter would double the compile time and are tested elsewhere.
  config = _config("lejepa", num_directions=16, projector_dims=(16, 8), invariances=("flip",))
  config.update(dataset="digits", devices=1, batch_size=16, online_probe=False)
  history, _ = run_steps(config, steps=2)
  for metrics in history:
    assert {"main/loss", "main/invariance", "main/sigreg", "main/collapse_std"} <= set(metrics)
    close(metrics["main/loss"], 0.95 * metrics["main/invariance"] + 0.05 * metrics["main/sigreg"],
          rel=1e-5)
    assert 0 < metrics["main/collapse_std"] <= 1
  assert history[0]["main/sigreg"] != history[1]["main/sigreg"]  # fresh directions each step
