"""RankMe, LiDAR and the collapse watch (issue 13): the effective rank against hand values, RankMe
of identity-like and rank-1 matrices, LiDAR against a numpy loop over the paper's definitions, larger
for features that separate the surrogate classes than for noise and blind to invertible linear
maps, the collapse verdict, the figures in report.md / the comparison / W&B, the config errors, and
the evaluator on a real (untrained) encoder with views.
"""
import math

import numpy as np
import pytest

from conftest import load_config
from ssljax.config_checks import check_config
from ssljax.errors import UserError
from ssljax.evaluate import rank, tables
from ssljax.evaluate.figures import wandb_summary

RNG = np.random.default_rng(0)


# --- the effective rank and RankMe ---------------------------------------------------------------
def test_effective_rank_hand_values():
  # p = (1/2, 1/2, 0, 0) + eps: entropy log 2, so 2 equally large values.
  assert rank.effective_rank(np.array([3.0, 3.0, 0.0, 0.0]), eps=0.0 + 1e-12) == pytest.approx(2.0)
  # p = (3/4, 1/4): exp(-(3/4 log 3/4 + 1/4 log 1/4)) = 1.7548
  expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
  assert rank.effective_rank(np.array([3.0, 1.0]), eps=1e-12) == pytest.approx(expected)
  assert rank.effective_rank(np.zeros(5), eps=1e-7) == 1.0  # a point


def test_rankme_of_identity_like_is_d_and_of_rank_one_is_one():
  d = 32
  assert rank.rankme(np.eye(d)) == pytest.approx(d, rel=1e-4)
  orthonormal, _ = np.linalg.qr(RNG.normal(size=(256, d)))  # equal singular values, N > D
  assert rank.rankme(orthonormal * 5.0) == pytest.approx(d, rel=1e-4)
  assert rank.rankme(RNG.normal(size=(4096, d))) > 0.95 * d  # isotropic Gaussian: nearly full
  rank_one = np.outer(RNG.normal(size=256), RNG.normal(size=d))
  assert rank.rankme(rank_one) == pytest.approx(1.0, abs=1e-3)
  # Two equal directions among D: RankMe 2, whatever D is.
  two = np.zeros((100, d))
  two[:50, 0], two[50:, 1] = 1.0, 1.0
  assert rank.rankme(two) == pytest.approx(2.0, rel=1e-4)


# --- LiDAR ---------------------------------------------------------------------------------------
def lidar_reference(e, delta=1e-4, eps=1e-8):
  """The paper's definitions, loop by loop: class means, the between- and within-class
  covariances (the latter + delta I), the LDA matrix, the effective rank of its eigenvalues."""
  n, q, d = e.shape
  means = [sum(e[i, j] for j in range(q)) / q for i in range(n)]
  grand = sum(means) / n
  sigma_b = sum(np.outer(m - grand, m - grand) for m in means) / n
  sigma_w = sum(np.outer(e[i, j] - means[i], e[i, j] - means[i])
                for i in range(n) for j in range(q)) / (n * q) + delta * np.eye(d)
  values, vectors = np.linalg.eigh(sigma_w)
  inv_sqrt = vectors @ np.diag(values ** -0.5) @ vectors.T
  lam = np.clip(np.linalg.eigvalsh(inv_sqrt @ sigma_b @ inv_sqrt), 0, None)
  p = lam / lam.sum() + eps
  return math.exp(-sum(pk * math.log(pk) for pk in p))


def surrogate_classes(rng, n=40, q=6, d=8, noise=0.1):
  """n images' q views: random class centres, views ``noise`` around them."""
  return rng.normal(size=(n, 1, d)) + rng.normal(size=(n, q, d)) * noise


def test_lidar_matches_the_numpy_loop():
  e = surrogate_classes(np.random.default_rng(1), n=7, q=3, d=4, noise=0.5)
  assert rank.lidar(e) == pytest.approx(lidar_reference(e), rel=1e-6)
  assert rank.lidar(e, delta=0.1, eps=1e-3) == pytest.approx(lidar_reference(e, 0.1, 1e-3), rel=1e-6)


def test_lidar_is_larger_for_features_that_separate_the_surrogate_classes_than_for_noise():
  # Noise (views of one image no closer than other images) has Sigma_b ~ Sigma_w / q, so its LDA
  # matrix is ~ I / q in expectation: a flat spectrum that only the finite sample (n classes in
  # d dimensions) makes uneven. Classes spread evenly over all d directions keep it flat at any
  # size: their LiDAR is near d, the noise's measurably below (means of 5 seeds: 7.3 vs 5.4 here).
  rng = np.random.default_rng(2)
  n, q, d = 16, 4, 8
  centres = 2.0 * np.concatenate([np.eye(d), -np.eye(d)])[:, None]  # (16, 1, 8): every direction
  separable = [rank.lidar(centres + rng.normal(size=(n, q, d)) * 0.1) for _ in range(5)]
  noise = [rank.lidar(rng.normal(size=(n, q, d))) for _ in range(5)]
  assert min(separable) > max(noise)
  assert np.mean(separable) > np.mean(noise) + 1.0
  assert np.mean(separable) == pytest.approx(d, rel=0.15)
  # Classes that differ along one direction only: LiDAR ~ 1, however well they separate.
  line = surrogate_classes(rng, noise=0.1)
  line[..., 1:] = rng.normal(size=line[..., 1:].shape) * 0.1
  assert rank.lidar(line) < 2.0


def test_lidar_ignores_invertible_linear_maps_of_the_features():
  # Sigma_w^{-1/2} whitens: LDA's spectrum is that of the features in any linear basis (delta,
  # tiny beside the within-class variance here, aside).
  e = surrogate_classes(np.random.default_rng(3), noise=0.3)
  mixing = RNG.normal(size=(8, 8)) + 3 * np.eye(8)
  assert rank.lidar(e @ mixing) == pytest.approx(rank.lidar(e), rel=1e-3)
  assert rank.rankme(e.reshape(-1, 8) @ mixing) != pytest.approx(rank.rankme(e.reshape(-1, 8)),
                                                                rel=1e-3)  # RankMe is not


# --- the collapse watch and the report -----------------------------------------------------------
def test_collapse_watch_flags_a_collapsed_embedding_only():
  healthy = rank.collapse_watch(RNG.normal(size=(2048, 64)))
  assert healthy["ratio"] == pytest.approx(1.0, rel=0.05) and not healthy["collapsed"]
  assert healthy["healthy_std"] == 1 / 8
  point = np.repeat(RNG.normal(size=(1, 64)), 128, axis=0) + RNG.normal(size=(128, 64)) * 1e-4
  collapsed = rank.collapse_watch(point)
  assert collapsed["std"] < 1e-3 and collapsed["collapsed"]


def _report(collapsed: bool) -> dict:
  watch = rank.collapse_watch(np.repeat(np.eye(16)[:1], 32, 0) if collapsed
                              else RNG.normal(size=(512, 16)))
  return {"dataset": "digits", "objective": "vicreg", "encoder": "cnn",
          "linear_probe": {"top1": 0.9, "top1_ci95": 0.01, "seeds": 2, "features": "pooled"},
          "rankme": {"encoder": 12.5, "projector": 30.25,
                     "protocol": {"num_images": 128, "dims": {"encoder": 16, "projector": 64}}},
          "lidar": {"encoder": 7.75, "protocol": {"num_images": 16, "views": 4}},
          "collapse": {"features": "projector", **watch}, "align": 0.1, "uniform": -1.0}


def test_the_figures_reach_report_md_the_comparison_and_wandb():
  report = _report(collapsed=False)
  rows = dict(tables.figure_rows(report))
  assert rows["RankMe, encoder (128 images, D=16)"] == "12.5"
  assert rows["RankMe, projector (D=64)"] == "30.2"
  assert rows["LiDAR, encoder (16 images × 4 views)"] == "7.8"
  watch = rows["collapse watch: std of L2-normalised projector (healthy ≈ 1/√D)"]
  assert watch.endswith("× healthy)") and "COLLAPSED" not in watch
  assert "warning" not in tables.report_markdown(report, [])
  row = tables.comparison_row({"name": "r", "dir": "d", "report": report}, {},
                              tables.comparison_figures([report]))
  assert (row["rankme_encoder"], row["rankme_projector"], row["lidar_encoder"]) == (12.5, 30.25, 7.75)
  headers = [h for h, _ in tables.comparison_columns(tables.comparison_figures([report]))]
  assert {"RankMe", "RankMe proj", "LiDAR", "collapse std"} <= set(headers)
  summary = wandb_summary(report)
  assert (summary["rankme/encoder"], summary["lidar/encoder"]) == (12.5, 7.75)
  assert summary["collapse/std"] == report["collapse"]["std"]


def test_a_collapsed_run_is_flagged_under_the_headline_and_in_the_command_output(tmp_path):
  from ssljax.evaluate.report import result_lines
  report = _report(collapsed=True)
  markdown = tables.report_markdown(report, []).splitlines()
  assert markdown[4].startswith("**warning: collapsed run: the held-out projector embeddings")
  assert "COLLAPSED" in dict(tables.figure_rows(report))[
      "collapse watch: std of L2-normalised projector (healthy ≈ 1/√D)"]
  assert any(line.startswith("warning: collapsed run") for line in result_lines(report, tmp_path))


@pytest.mark.parametrize("key,value,message", [
    ("rankme_images", 1, "rank.rankme_images must be >= 2, got 1"),
    ("lidar_images", 0, "rank.lidar_images must be >= 2, got 0"),
    ("lidar_views", 1, "rank.lidar_views must be >= 2, got 1"),
])
def test_rank_settings_out_of_range_are_config_errors(key, value, message):
  config = load_config("fmnist_vicreg", "smoke")
  config.rank[key] = value
  with pytest.raises(UserError, match=message):
    check_config(config)


def test_the_evaluator_reads_held_out_images_under_the_runs_views():
  # A fixed random-feature "encoder" (flattened pixels times a matrix) and a tanh "projector":
  # the evaluator's plumbing (chunks, views, sections) without an encoder's compile. The whole
  # path from a trained state runs in every end-to-end test that writes a report.
  import jax.numpy as jnp
  from ssljax.data.sources import load_dataset
  data = load_dataset("digits")
  rng = np.random.default_rng(4)
  variables = {"w": jnp.asarray(rng.normal(size=(64, 16)) / 8, jnp.float32),
               "v": jnp.asarray(rng.normal(size=(16, 32)), jnp.float32)}

  def embed(variables, x):
    encoder = x.reshape(x.shape[0], -1) @ variables["w"]
    return {"encoder": encoder, "projector": jnp.tanh(encoder @ variables["v"])}

  settings = {"rankme_images": 128, "lidar_images": 16, "lidar_views": 4}
  views = load_config("fmnist_vicreg", "smoke").views
  result = rank.rank_report(embed, variables, data.test_images, views, ("flip", "scale"), settings)
  clean = np.asarray(data.test_images[:128], np.float32).reshape(128, -1) / 255.0
  assert result["rankme"]["encoder"] == pytest.approx(rank.rankme(clean @ np.asarray(variables["w"])),
                                                      rel=1e-4)  # RankMe reads the clean images
  assert result["rankme"]["protocol"] == {"num_images": 128, "eps": 1e-7,
                                          "dims": {"encoder": 16, "projector": 32}}
  assert 1 < result["rankme"]["projector"] <= 32
  lidar = result["lidar"]
  assert lidar["protocol"] == {"num_images": 16, "views": 4, "invariances": ["scale", "flip"],
                               "delta": 1e-4, "eps": 1e-8}
  assert 1 < lidar["encoder"] <= 16 - 1 + 1e-6  # rank(Sigma_b) <= n - 1 surrogate classes
  assert result["collapse"]["features"] == "projector" and not result["collapse"]["collapsed"]
  # Views that never differ (flip only, never applied): every class is one point, Sigma_w is
  # delta * I alone and LiDAR is the effective rank of the class means' covariance.
  still = rank.rank_report(embed, variables, data.test_images, {**views, "flip_prob": 0.0},
                           ("flip",), settings)
  means = clean[:16] @ np.asarray(variables["w"], np.float64)
  means -= means.mean(axis=0)
  spectrum = np.linalg.eigvalsh(means.T @ means / 16)
  assert still["lidar"]["encoder"] == pytest.approx(rank.effective_rank(spectrum, 1e-8), rel=1e-3)
