"""The untrained-encoder control in every report, the validation kNN, and evaluation after training
with other probe settings: the online probe's input is fixed at training time, old runs still
evaluate, and a failed evaluation prints its one line and nothing else."""
import json
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, load_config
from ssljax import pretrain as pretrain_cli
from ssljax.evaluate.knn import knn_report
from ssljax.evaluate.linear_probe import validation_split
from ssljax.evaluate.run import untrained_variables
from ssljax.train import loop


@pytest.fixture(scope="module")
def map_run(tmp_path_factory):
  """A finished smoke run on digits whose headline probe reads the flattened final map."""
  config = load_config("fmnist_infonce", "smoke")
  config.dataset = "digits"
  config.devices = 2
  # The online head reads the flattened map too, so the run also stands for one made before
  # online_probe_features existed, when the head was sized for probe.features.
  config.probe.features = config.online_probe_features = "last_stage"
  config.probe.raw_pixel_baseline = False
  workdir = tmp_path_factory.mktemp("runs") / "map"
  pretrain_cli.run(config, workdir)
  return workdir


def test_report_holds_the_untrained_encoder_and_the_gain(map_run):
  report = json.loads((map_run / "report.json").read_text())
  control = report["random_init"]
  assert report["linear_probe"]["features"] == "last_stage"
  assert set(report["linear_probes"]) == {"last_stage", "pooled"}  # pooled always
  assert set(control["linear_probes"]) == {"last_stage", "pooled"}
  assert {"top1", "val_top1"} <= set(control["knn"]) and "top1_ci95" in control["linear_probe"]
  gain = report["gain"]
  assert gain["linear_probe"] == pytest.approx(
      report["linear_probe"]["top1"] - control["linear_probe"]["top1"])
  assert gain["knn"] == pytest.approx(report["knn"]["top1"] - control["knn"]["top1"])
  assert gain["linear_probes"]["pooled"] == pytest.approx(
      report["linear_probes"]["pooled"]["top1"] - control["linear_probes"]["pooled"]["top1"])
  first = (map_run / "report.md").read_text().splitlines()[2]
  assert first.startswith(f"**linear probe (last_stage): {report['linear_probe']['top1']:.4f} — "
                          f"untrained encoder {control['linear_probe']['top1']:.4f} (")
  assert "; kNN (pooled): " in first
  assert (map_run / "plots" / "probe_accuracy.png").exists()


def test_untrained_variables_are_the_runs_first_state():
  config = load_config("fmnist_infonce", "smoke")
  config.dataset = "digits"
  exp = loop.build_experiment(config)
  state = jax.device_get(loop.initial_state(exp))
  untrained = jax.device_get(untrained_variables(exp))
  for got, want in ((untrained["params"], state.params), (untrained["batch_stats"], state.batch_stats)):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_array_equal(a, b)


def _brute_force_knn(bank, bank_y, queries, k, temperature, num_classes):
  """Cosine similarity, the k most similar, each voting exp(sim / t) for its label."""
  norm = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
  sims = norm(queries) @ norm(bank).T
  preds = []
  for row in sims:
    nearest = np.argsort(-row)[:k]
    votes = np.zeros(num_classes)
    for j in nearest:
      votes[bank_y[j]] += np.exp(row[j] / temperature)
    preds.append(np.argmax(votes))
  return np.array(preds)


def test_knn_validation_figure_is_knn_of_the_validation_split_among_the_rest():
  rng = np.random.default_rng(3)
  y = rng.integers(0, 4, 300)
  x = rng.normal(size=(300, 6)) + y[:, None] * 0.7  # classes overlap: accuracy well below 1
  test_x, test_y = rng.normal(size=(50, 6)), rng.integers(0, 4, 50)
  result = knn_report(x, y, test_x, test_y, 4, k=7, temperature=0.2, val_fraction=0.2)
  val, fit = validation_split(300, 0.2)
  assert len(val) == 60 and not set(val) & set(fit)
  want = np.mean(_brute_force_knn(x[fit], y[fit], x[val], 7, 0.2, 4) == y[val])
  assert result["val_top1"] == pytest.approx(want, abs=1e-9)
  assert 0.3 < result["val_top1"] < 0.95
  assert result["top1"] == pytest.approx(np.mean(_brute_force_knn(x, y, test_x, 7, 0.2, 4) == test_y))


def _evaluate_cli(*args):
  return subprocess.run([sys.executable, "-m", "ssljax.evaluate", *args, "--config.cpu_devices=2"],
                        cwd=ROOT, text=True, capture_output=True, timeout=600)


def test_evaluation_may_read_other_features_than_training_did(map_run, tmp_path):
  run = tmp_path / "run"
  shutil.copytree(map_run, run)
  result = _evaluate_cli(f"--workdir={run}", "--config.probe.features=pooled",
                         "--config.probe.random_init=False")
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads((run / "report.json").read_text())
  assert report["linear_probe"]["features"] == "pooled" and "random_init" not in report
  online = report["online_probe"]  # its input was fixed at training time
  assert online["features"] == "last_stage" and 0 <= online["top1"] <= 1


def test_a_run_from_before_online_probe_features_still_evaluates(map_run, tmp_path):
  # Such a run's online head was sized for probe.features, and its config.json lacks the key.
  run = tmp_path / "old"
  shutil.copytree(map_run, run)
  saved = json.loads((run / "config.json").read_text())
  del saved["online_probe_features"]
  (run / "config.json").write_text(json.dumps(saved))
  result = _evaluate_cli(f"--workdir={run}", "--config.probe.features=pooled",
                         "--config.probe.random_init=False")
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.loads((run / "report.json").read_text())["online_probe"]["features"] == "last_stage"


def test_a_failed_evaluation_prints_one_line_and_nothing_else(map_run, tmp_path):
  run = tmp_path / "run"
  shutil.copytree(map_run, run)
  # A model setting the checkpoint does not match: the restore fails.
  result = _evaluate_cli(f"--workdir={run}", "--config.online_probe_features=block0")
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr[-3000:]
  assert lines[0].startswith("error: the checkpoint at step 8 in ") and "restore" in lines[0]
  # From the metadata, before any read: the head reads 64 channels in the run, 128 here.
  assert "is stored with shape (64, 10); this config builds (128, 10)" in lines[0]


def test_an_empty_probe_grid_is_refused_before_training(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "ssljax.pretrain", "--config=experiments/fmnist_infonce.py:smoke",
       f"--workdir={tmp_path}", "--config.probe.lrs=()"],
      cwd=ROOT, text=True, capture_output=True, timeout=300)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert "probe.lrs must be a non-empty tuple of numbers" in result.stderr
  assert not (tmp_path / "checkpoints").exists()
