"""The main job end to end on real Fashion-MNIST: smoke pretrain + probe + report, device-count
equivalence, CLI overrides, resume after an interruption, one-line errors."""
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, run_steps
from ssljax import pretrain as pretrain_cli
from ssljax.data.sources import load_dataset
from ssljax.tracking import MetricsWriter
from ssljax.train import loop

REPORT_KEYS = {"dataset", "objective", "encoder", "pretrain", "linear_probe", "knn", "online_probe",
               "align", "uniform"}


@pytest.fixture(scope="module")
def fmnist():
  return load_dataset("fashion_mnist")


def test_smoke_run_writes_the_run_directory(smoke_config, tmp_path):
  smoke_config.wandb.mode = "offline"  # a real offline W&B run, syncable later
  report = pretrain_cli.run(smoke_config, tmp_path)
  assert REPORT_KEYS <= set(report)
  saved = json.loads((tmp_path / "report.json").read_text())
  assert REPORT_KEYS <= set(saved)
  assert set(saved["pretrain"]) >= {"steps", "epochs", "wall_s", "images_per_s", "final_loss", "devices"}
  assert saved["pretrain"]["steps"] == 8 and saved["pretrain"]["devices"] == 2
  probe = saved["linear_probe"]
  assert set(probe) >= {"top1", "top1_ci95", "seeds", "val_top1", "chosen"}
  assert probe["seeds"] == 2 and 0.3 < probe["top1"] <= 1.0  # 10 classes: chance is 0.1
  assert "raw_pixel_probe" in saved
  for name in ("config.json", "metrics.jsonl", "report.md", "plots/pretrain_loss.png",
               "plots/probe_accuracy.png"):
    assert (tmp_path / name).exists(), name
  assert list((tmp_path / "checkpoints").iterdir())
  assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
  config = json.loads((tmp_path / "config.json").read_text())
  assert list(config["objectives"]) == ["infonce"] and list(config["encoders"]) == ["cnn"]
  assert "linear probe top-1" in (tmp_path / "report.md").read_text()


def test_one_and_two_devices_give_the_same_loss_and_parameters(smoke_config, fmnist):
  smoke_config.devices = 1
  one, state_one = run_steps(smoke_config, fmnist, 3)
  smoke_config.devices = 2
  two, state_two = run_steps(smoke_config, fmnist, 3)
  for a, b in zip(one, two):
    np.testing.assert_allclose(a["main/loss"], b["main/loss"], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               state_one.params, state_two.params)


def test_interrupted_run_resumes_from_checkpoint_and_matches(smoke_config, fmnist, tmp_path,
                                                             monkeypatch):
  # Uninterrupted reference.
  exp = loop.build_experiment(smoke_config, fmnist)
  ref_dir = _mk(tmp_path / "ref")
  ref_state, _ = loop.pretrain(exp, ref_dir, MetricsWriter(ref_dir, {}, smoke_config.wandb))

  # Crash at step 6 (a checkpoint exists at step 4), then rerun the same thing on the same dir.
  exp = loop.build_experiment(smoke_config, fmnist)
  real_batch = exp.stream.batch

  def crashing_batch(step):
    if step == 6:
      raise KeyboardInterrupt("simulated crash")
    return real_batch(step)

  monkeypatch.setattr(exp.stream, "batch", crashing_batch)
  workdir = _mk(tmp_path / "run")
  with pytest.raises(KeyboardInterrupt):
    loop.pretrain(exp, workdir, MetricsWriter(workdir, {}, smoke_config.wandb))
  exp = loop.build_experiment(smoke_config, fmnist)
  state, summary = loop.pretrain(exp, workdir, MetricsWriter(workdir, {}, smoke_config.wandb))
  assert summary["resumed_from_step"] == 4 and int(state.step) == 8
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params),
               jax.device_get(ref_state.params))


def _mk(path):
  path.mkdir(parents=True, exist_ok=True)
  return path


def _cli(*args, timeout=300):
  return subprocess.run([sys.executable, "-m", "ssljax.pretrain", *args], cwd=ROOT, text=True,
                        capture_output=True, timeout=timeout)


def test_cli_overrides_reach_the_config(tmp_path):
  result = _cli("--config=experiments/fmnist_infonce.py:smoke", f"--workdir={tmp_path}",
                "--config.steps=2", "--config.batch_size=16", "--config.objectives.infonce.temperature=0.25",
                "--config.probe.seeds=1", "--config.probe.raw_pixel_baseline=False",
                "--config.cpu_devices=2")
  assert result.returncode == 0, result.stderr[-2000:]
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["steps"] == 2 and config["batch_size"] == 16
  assert config["objectives"]["infonce"]["temperature"] == 0.25
  assert "report:" in result.stdout
  assert json.loads((tmp_path / "report.json").read_text())["pretrain"]["devices"] == 2


def test_cli_unknown_encoder_is_one_line_with_valid_names(tmp_path):
  result = _cli("--config=experiments/fmnist_infonce.py:smoke", f"--workdir={tmp_path}",
                "--config.encoder=resnet9000")
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith("error: unknown encoder 'resnet9000'; valid names: ")
  assert "Traceback" not in result.stderr
