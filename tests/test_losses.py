"""Loss functions against small hand-computed cases."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.objectives import losses


def test_info_nce_matches_hand_computed_two_images():
  # Unit vectors: view1 of image a = (1,0), of b = (0,1); view2 of a = (1,0), of b = (0,1).
  z1 = jnp.array([[2.0, 0.0], [0.0, 3.0]])  # scaling must not matter (cosine similarity)
  z2 = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  t = 0.5
  # Every anchor: positive similarity 1, negatives (the 2 other views) similarity 0 and 0.
  expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * math.exp(0)))
  assert float(losses.info_nce(z1, z2, t)) == pytest.approx(expected, rel=1e-6)


def test_info_nce_generic_case_matches_numpy_formula():
  rng = np.random.default_rng(0)
  z1, z2 = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
  t = 0.2
  z = np.concatenate([z1, z2])
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  sim = z @ z.T / t
  total = 0.0
  for i in range(8):
    pos = (i + 4) % 8
    denom = sum(np.exp(sim[i, k]) for k in range(8) if k != i)
    total += -np.log(np.exp(sim[i, pos]) / denom)
  assert float(losses.info_nce(jnp.array(z1), jnp.array(z2), t)) == pytest.approx(total / 8, rel=1e-5)


def test_info_nce_is_lower_when_views_agree():
  rng = np.random.default_rng(1)
  z = jnp.array(rng.normal(size=(16, 8)))
  noise = jnp.array(rng.normal(size=(16, 8)))
  assert losses.info_nce(z, z, 0.5) < losses.info_nce(z, noise, 0.5)


def test_align_loss_zero_for_identical_pairs_and_hand_value():
  x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  assert float(losses.align_loss(x, x)) == 0.0
  y = jnp.array([[0.0, 1.0], [0.0, 1.0]])  # first pair at distance sqrt(2), second identical
  assert float(losses.align_loss(x, y, alpha=2)) == pytest.approx((2.0 + 0.0) / 2)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_align_loss_gradient_is_finite_at_an_identical_pair(alpha):
  # d/dx mean_i ||x_i - y_i||^alpha = alpha ||d_i||^(alpha-2) d_i / N, and 0 for a pair with d_i = 0
  # (the subgradient PyTorch's norm takes, in the authors' code).
  x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  y = jnp.array([[0.0, 1.0], [0.0, 1.0]])  # the second pair is identical
  grad = np.asarray(jax.grad(lambda a: losses.align_loss(a, y, alpha))(x))
  d = np.array([1.0, -1.0])
  expected = np.array([alpha * np.linalg.norm(d) ** (alpha - 2) * d / 2, [0.0, 0.0]])
  np.testing.assert_allclose(grad, expected, rtol=1e-6)


def test_uniform_loss_hand_value_and_geometry():
  # Two antipodal points: one pair at squared distance 4 -> log(exp(-2 * 4)) = -8.
  x = jnp.array([[1.0, 0.0], [-1.0, 0.0]])
  assert float(losses.uniform_loss(x, t=2)) == pytest.approx(-8.0, rel=1e-6)
  angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
  spread = jnp.array(np.stack([np.cos(angles), np.sin(angles)], 1))
  clustered = jnp.array(np.stack([np.cos(angles * 0.1), np.sin(angles * 0.1)], 1))
  assert losses.uniform_loss(spread) < losses.uniform_loss(clustered)


def test_uniform_loss_matches_a_loop_over_pairs():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(40, 16))
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  pair_terms = [np.exp(-2 * np.sum((x[i] - x[j]) ** 2)) for i in range(40) for j in range(i + 1, 40)]
  expected = np.log(np.mean(pair_terms))  # Wang & Isola: log mean over pairs i < j
  assert float(losses.uniform_loss(jnp.asarray(x, jnp.float32))) == pytest.approx(expected,
                                                                                  abs=1e-5)


def test_cross_entropy_ignores_unlabelled():
  logits = jnp.array([[2.0, 0.0], [0.0, 2.0]])
  labels = jnp.array([0, -1])
  assert float(losses.cross_entropy(logits, labels)) == pytest.approx(
      math.log(1 + math.exp(-2)), rel=1e-5)
  assert float(losses.accuracy(logits, labels)) == 1.0
