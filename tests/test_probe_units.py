"""The linear probe's protocol and the kNN evaluator against independent references (issue 12):
hyperparameters come from the validation split even when the test split would pick others, the
confidence interval is scipy's Student-t interval, and kNN matches a brute-force numpy loop."""
import itertools

import ml_collections
import numpy as np
import pytest
from scipy import stats

from ssljax.evaluate import knn
from ssljax.evaluate.linear_probe import fit_linear, linear_probe, mean_ci95

# Two settings that disagree on purpose. lr=0 leaves the weights at zero: every logit ties and
# argmax predicts class 0 for every input. lr=0.1 learns the rule of the training data.
FROZEN, LEARNS = 0.0, 0.1


def _probe_config(**overrides):
  return ml_collections.ConfigDict({
      "epochs": 20, "batch_size": 32, "val_fraction": 0.25, "seeds": 2,
      "lrs": (FROZEN, LEARNS), "weight_decays": (0.0, 1e-4), **overrides})


def _split_data(seed=0):
  """Train (and therefore validation) labels follow ``y = x0 > 0``. Every test point has x0 > 0.5
  but label 0, so on test the frozen setting scores 1.0 and the learning one 0.0: a probe that
  looked at test to choose would choose lr=0."""
  rng = np.random.default_rng(seed)
  train_x = rng.normal(size=(200, 4)).astype(np.float32)
  train_y = (train_x[:, 0] > 0).astype(np.int32)
  test_x = rng.normal(size=(60, 4)).astype(np.float32)
  test_x[:, 0] = np.abs(test_x[:, 0]) + 0.5
  test_y = np.zeros(60, np.int32)
  return train_x, train_y, test_x, test_y


def _accuracy(params, x, y):
  """Top-1 written out with numpy (not the module's topk_accuracy)."""
  logits = np.asarray(x, np.float64) @ np.asarray(params["w"], np.float64) + np.asarray(params["b"])
  return float(np.mean(logits.argmax(1) == y))


def test_linear_probe_picks_hyperparameters_on_validation_never_on_test():
  train_x, train_y, test_x, test_y = _split_data()
  cfg = _probe_config()
  result = linear_probe(train_x, train_y, test_x, test_y, 2, cfg)

  # The protocol redone by hand: the same seeded validation split, each setting fitted on the rest
  # and scored on validation; the first best one wins.
  order = np.random.default_rng(0).permutation(len(train_x))
  n_val = int(round(cfg.val_fraction * len(train_x)))
  val, rest = order[:n_val], order[n_val:]
  # Standardised by the statistics of the rows each fit trains on, written out with numpy.
  moments = lambda rows: (train_x[rows].mean(0), 1 / (train_x[rows].std(0) + 1e-6))
  (fit_mean, fit_scale), (all_mean, all_scale) = moments(rest), moments(np.arange(len(train_x)))
  expected_grid, test_scores = [], {}
  for lr, wd in itertools.product(cfg.lrs, cfg.weight_decays):
    params = fit_linear(train_x, train_y, rest, fit_mean, fit_scale, lr, wd, 0, num_classes=2,
                        epochs=cfg.epochs, batch_size=cfg.batch_size)
    val_x = (train_x[val] - fit_mean) * fit_scale
    expected_grid.append({"lr": lr, "wd": wd, "val_top1": _accuracy(params, val_x, train_y[val])})
    refit = fit_linear(train_x, train_y, np.arange(len(train_x)), all_mean, all_scale, lr, wd, 0,
                       num_classes=2, epochs=cfg.epochs, batch_size=cfg.batch_size)
    test_scores[lr, wd] = _accuracy(refit, (test_x - all_mean) * all_scale, test_y)
  assert [(g["lr"], g["wd"]) for g in result["grid"]] == [(g["lr"], g["wd"]) for g in expected_grid]
  assert [g["val_top1"] for g in result["grid"]] == [g["val_top1"] for g in expected_grid]
  by_validation = max(expected_grid, key=lambda g: g["val_top1"])
  by_test = max(test_scores, key=test_scores.get)

  # The case really separates the two: validation prefers learning, test prefers lr=0.
  assert by_validation["lr"] == LEARNS and by_validation["val_top1"] > 0.9
  assert by_test[0] == FROZEN and test_scores[by_test] == 1.0
  assert result["chosen"] == {"lr": by_validation["lr"], "wd": by_validation["wd"]}
  assert result["val_top1"] == by_validation["val_top1"]
  # The reported test score is the chosen setting's, however bad: not the better test score.
  assert result["top1_per_seed"] == [0.0] * cfg.seeds and result["top1"] == 0.0
  assert result["seeds"] == cfg.seeds and result["train_size"] == 200


@pytest.mark.parametrize("values", [
    [0.91, 0.93, 0.92],
    [0.5, 0.7],
    np.random.default_rng(3).uniform(0.6, 0.9, size=10).tolist(),
])
def test_mean_ci95_is_the_student_t_interval(values):
  mean, half = mean_ci95(values)
  n = len(values)
  low, high = stats.t.interval(0.95, n - 1, loc=np.mean(values), scale=stats.sem(values))
  assert mean == pytest.approx(np.mean(values), rel=1e-12)
  assert half == pytest.approx((high - low) / 2, rel=1e-10)
  # The same interval from the one-sample t-test (a second, independent scipy route).
  ci = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
  assert (mean - half, mean + half) == pytest.approx((ci.low, ci.high), rel=1e-10)


def test_mean_ci95_of_one_value_has_no_interval():
  mean, half = mean_ci95([0.8])
  assert mean == 0.8 and np.isnan(half)


def _knn_reference(train_x, train_y, test_x, num_classes, k, temperature):
  """Brute force, one query at a time in float64: cosine similarity to every training point, the
  k most similar vote for their label with weight exp(similarity / temperature)."""
  bank = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
  preds = []
  for q in test_x.astype(np.float64):
    sims = bank @ (q / np.linalg.norm(q))
    votes = np.zeros(num_classes)
    for j in np.argsort(-sims)[:k]:
      votes[train_y[j]] += np.exp(sims[j] / temperature)
    preds.append(int(np.argmax(votes)))
  return np.array(preds)


@pytest.fixture(scope="module")
def clusters():
  """Five overlapping Gaussian classes in 16-d: neither trivially separable nor noise, so the
  prediction depends on k and the temperature."""
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(5, 16))
  train_y, test_y = rng.integers(0, 5, 150), rng.integers(0, 5, 61)
  train_x = (centers[train_y] + 1.5 * rng.normal(size=(150, 16))).astype(np.float32)
  test_x = (centers[test_y] + 1.5 * rng.normal(size=(61, 16))).astype(np.float32)
  return train_x, train_y, test_x, test_y


@pytest.mark.parametrize("k", [1, 5, 20, 500])  # 500 > the 150 training points: all of them vote
@pytest.mark.parametrize("temperature", [0.01, 0.1, 1.0])
def test_knn_matches_a_brute_force_numpy_knn(clusters, k, temperature):
  train_x, train_y, test_x, test_y = clusters
  expected = _knn_reference(train_x.astype(np.float64), train_y, test_x, 5, k, temperature)
  bank, queries = knn.l2_normalize(train_x), knn.l2_normalize(test_x)
  preds = np.asarray(knn._predict(queries, bank, train_y, k=min(k, 150), num_classes=5,
                                  temperature=temperature))
  np.testing.assert_array_equal(preds, expected)
  # The public function, in uneven chunks (61 queries, 16 at a time), reports that accuracy.
  result = knn.knn_accuracy(train_x, train_y, test_x, test_y, 5, k=k, temperature=temperature,
                            chunk=16)
  assert result == {"top1": float(np.mean(expected == test_y)), "k": min(k, 150),
                    "temperature": temperature}
  assert 0.2 < result["top1"] < 1.0  # neither chance nor perfect: the check has teeth


def test_knn_selects_neighbours_without_sorting_every_similarity():
  # XLA:CPU keeps top_k as a partial selection only when nothing is fused after it; fused with the
  # vote it compiled to a full sort of the (queries, bank) similarities, 30x slower at a 60k bank.
  # The compiled program's text says which one it got (compiled, not run: no bank is allocated).
  import jax
  query = jax.ShapeDtypeStruct((1024, 256), np.float32)
  bank = jax.ShapeDtypeStruct((60000, 256), np.float32)
  hlo = knn._neighbours.lower(query, bank, k=200).compile().as_text()
  assert " sort(" not in hlo, "kNN's top-k became a full sort of every similarity"


def test_knn_with_a_small_temperature_does_not_overflow():
  """exp(similarity / 0.01) exceeds float32 above similarity 0.89. Here two class-1 neighbours are
  as close to the query as one class-0 neighbour (similarity ~0.999): class 1 has twice the weight
  and must win, which an overflow to inf == inf (argmax takes class 0) would hide."""
  query = np.array([[1.0, 0.0, 0.0]], np.float32)
  train_x = np.array([[1.0, 0.040, 0.0], [1.0, 0.0, 0.041], [1.0, -0.042, 0.0], [-1.0, 0.0, 0.0]],
                     np.float32)
  train_y = np.array([1, 1, 0, 0])
  expected = _knn_reference(train_x.astype(np.float64), train_y, query, 2, 3, 0.01)
  assert expected.tolist() == [1]
  result = knn.knn_accuracy(train_x, train_y, query, np.array([1]), 2, k=3, temperature=0.01)
  assert result["top1"] == 1.0


def test_features_are_held_once_the_probe_reads_them_in_place():
  """A flattened map of 60k images is 3 GB: extract_features allocates it aligned, so the probe's
  device array on the CPU is the same memory (aliased), not a second copy."""
  import jax

  from ssljax.evaluate.features import ALIGNMENT, aligned_empty
  x = aligned_empty((1000, 37))
  x[:] = np.random.default_rng(0).normal(size=x.shape)
  assert x.ctypes.data % ALIGNMENT == 0 and x.dtype == np.float32 and x.shape == (1000, 37)
  on_device = jax.device_put(x, may_alias=True)
  assert on_device.unsafe_buffer_pointer() == x.ctypes.data  # aliased, no copy
  np.testing.assert_array_equal(np.asarray(on_device), x)


def test_linear_logits_of_selected_rows_equal_the_formula_on_those_rows():
  from ssljax.evaluate.linear_probe import linear_logits
  rng = np.random.default_rng(1)
  x = rng.normal(size=(50, 6)).astype(np.float32)
  params = {"w": rng.normal(size=(6, 3)), "b": rng.normal(size=3)}
  mean, scale = rng.normal(size=6), rng.uniform(0.5, 2, size=6)
  rows = rng.permutation(50)[:17]
  expected = ((x[rows] - mean) * scale) @ params["w"] + params["b"]  # standardise, then the head
  np.testing.assert_allclose(linear_logits(params, x, mean, scale, rows, chunk=5), expected,
                             rtol=1e-5, atol=1e-5)


def test_features_stored_in_bfloat16_probe_like_float32():
  """probe.feature_dtype='bfloat16' halves the evaluation's memory; the probe computes in float32
  from the rounded features, so the protocol picks the same setting and lands on the same top-1
  within a few test images."""
  import jax.numpy as jnp
  rng = np.random.default_rng(5)
  centres = rng.normal(size=(4, 64)) * 0.6
  labels = rng.integers(0, 4, size=1200)
  x = (centres[labels] + rng.normal(size=(1200, 64))).astype(np.float32) + 3.0  # an offset, as ReLU maps have
  train_x, test_x, train_y, test_y = x[:1000], x[1000:], labels[:1000], labels[1000:]
  config = _probe_config(lrs=(1e-3, 1e-2), weight_decays=(1e-4,), batch_size=64, epochs=10)
  exact = linear_probe(train_x, train_y, test_x, test_y, 4, config)
  rounded = linear_probe(train_x.astype(jnp.bfloat16), train_y, test_x.astype(jnp.bfloat16),
                         test_y, 4, config)
  assert rounded["chosen"] == exact["chosen"]
  assert abs(rounded["top1"] - exact["top1"]) <= 0.02  # 4 of 200 test images
  assert rounded["top1"] > 0.6  # and both actually learned the four clusters
  bf16_knn = knn.knn_accuracy(train_x.astype(jnp.bfloat16), train_y, test_x.astype(jnp.bfloat16),
                              test_y, 4, k=20)
  f32_knn = knn.knn_accuracy(train_x, train_y, test_x, test_y, 4, k=20)
  assert abs(bf16_knn["top1"] - f32_knn["top1"]) <= 0.02


def test_an_unknown_feature_dtype_is_one_clear_error():
  from ssljax.base_config import base_config
  from ssljax.config_checks import check_config
  from ssljax.errors import UserError
  config = base_config()
  config.probe.feature_dtype = "float16"
  with pytest.raises(UserError, match="probe.feature_dtype 'float16' unknown; valid: float32, bfloat16"):
    check_config(config)


def test_a_fit_on_bfloat16_features_never_holds_a_float32_copy_of_them():
  """XLA's own buffer plan of the compiled fit (nothing runs): its working memory is the
  minibatches', the same for float32 and bfloat16 features, never the features converted whole
  (which the bfloat16 storage exists to avoid: 2.8 GiB for the quickstart's flattened map)."""
  import jax
  import jax.numpy as jnp

  from ssljax.evaluate.linear_probe import device_features, fit_linear_grid
  n, d = 8192, 1024  # features 32 MiB in float32: any whole copy stands out of the ~2 MiB of work
  temp = {}
  for dtype in (np.float32, jnp.bfloat16):
    x = device_features(np.zeros((n, d), dtype))
    spec = lambda shape, dt: jax.ShapeDtypeStruct(shape, dt)
    compiled = fit_linear_grid.lower(
        x, spec((n,), jnp.int32), spec((n - 512,), jnp.int32), spec((d,), jnp.float32),
        spec((d,), jnp.float32), spec((2,), jnp.float32), spec((2,), jnp.float32), 0,
        num_classes=10, epochs=1, batch_size=256).compile()
    temp[np.dtype(dtype).name] = compiled.memory_analysis().temp_size_in_bytes
  assert temp["bfloat16"] <= temp["float32"] < n * d * 2 / 4, temp
