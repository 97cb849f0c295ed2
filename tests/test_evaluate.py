"""The evaluation protocol beyond the linear probe: invariance probe on constructed encoders, the
stage -> parameter map every freeze relies on, transfer (table shape; frozen really frozen),
``python -m ssljax.evaluate`` from a checkpoint, and the many-run comparison report."""
import json
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, load_config
from ssljax import pretrain as pretrain_cli
from ssljax import compare
from ssljax.config_checks import check_config
from ssljax.data.sources import Dataset, load_dataset
from ssljax.errors import UserError
from ssljax.evaluate.geometry import invariance, invariance_scores
from ssljax.evaluate.transfer import AFTER_STAGES, adapt_images, run_transfer, stage_params
from ssljax.models import build_encoder
from ssljax.train import loop

VIEWS = {"scale": (0.4, 1.0), "ratio": (3 / 4, 4 / 3), "flip_prob": 0.5}


def _images(n=256, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, 12, 12, 1), dtype=np.uint8)


def test_exactly_flip_invariant_encoder_scores_one_and_raw_pixels_do_not():
  mirror_sum = lambda v, x: {"encoder": (x + x[:, :, ::-1]).reshape(len(x), -1)}
  result = invariance(mirror_sum, {}, _images(), VIEWS)
  assert result["flip"]["pair_cos"] == pytest.approx(1.0, abs=1e-5)
  assert result["flip"]["score"] == pytest.approx(1.0, abs=1e-4)
  assert result["scale"]["score"] < 0.9  # crops still move it
  # Noise images: a mirrored one is no closer to its original than to another image.
  raw = invariance(lambda v, x: {"encoder": x.reshape(len(x), -1)}, {}, _images(), VIEWS)
  assert abs(raw["flip"]["score"]) < 0.05
  assert raw["flip"]["random_cos"] == pytest.approx(raw["flip"]["pair_cos"], abs=0.02)


def test_geometry_on_fewer_than_two_images_is_a_config_error():
  config = load_config("fmnist_infonce", "smoke")
  config.geometry.images = 1
  with pytest.raises(UserError, match="geometry.images must be >= 2, got 1"):
    check_config(config)


def test_collapsed_encoder_has_no_invariance_score():
  constant = lambda v, x: {"encoder": jnp.ones((len(x), 4))}
  assert np.isnan(invariance(constant, {}, _images(64), VIEWS)["flip"]["score"])
  assert invariance_scores(0.9, 0.5) == pytest.approx(0.8)


def _groups(name, args, shape=(28, 28, 1)):
  encoder = build_encoder(name, args)
  variables = encoder.init(jax.random.PRNGKey(0), jnp.zeros((1, *shape)), train=False)
  return stage_params(encoder, variables, shape)


def test_stage_parameter_map_per_encoder_family():
  assert _groups("cnn", {"widths": (4, 8, 8)}) == {
      "block0": ["bn0", "conv0"], "block1": ["bn1", "conv1"], "block2": ["bn2", "conv2"]}
  resnet = _groups("resnet18", {"width": 4, "stage_sizes": (2, 1)})  # stem stage, then stage{i}
  assert list(resnet)[1:] == ["stage0", "stage1"]
  assert list(resnet.values()) == [["stem_bn", "stem_conv"], ["stage0_block0", "stage0_block1"],
                                   ["stage1_block0"]]
  # Layers after the last stage freeze only with the whole encoder.
  mlp = _groups("mlp", {"hidden": (16, 8), "features": 4})
  assert mlp == {"hidden0": ["dense0"], "hidden1": ["dense1"], AFTER_STAGES: ["code"]}


def test_adapt_images_resizes_and_adapts_channels():
  digits8 = np.full((3, 8, 8, 1), 200, np.uint8)
  out = adapt_images(digits8, (28, 28, 3))
  assert out.shape == (3, 28, 28, 3) and out.dtype == np.uint8 and (out == 200).all()
  assert adapt_images(np.zeros((2, 28, 28, 3), np.uint8), (28, 28, 1)).shape == (2, 28, 28, 1)


@pytest.fixture(scope="module")
def fmnist():
  return load_dataset("fashion_mnist")


def test_transfer_table_and_frozen_stages_stay_bit_identical(fmnist):
  config = load_config("fmnist_infonce", "smoke")  # cnn with 2 stages
  config.devices = 2
  config.transfer.epochs = 1
  exp = loop.build_experiment(config, fmnist)
  state = jax.device_get(loop.initial_state(exp))
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  digits = load_dataset("digits")
  data = Dataset("digits", adapt_images(digits.train_images[:256], (28, 28, 1)), digits.train_labels[:256],
                 adapt_images(digits.test_images[:64], (28, 28, 1)), digits.test_labels[:64], 10)
  result = run_transfer(exp.objective, variables, (28, 28, 1), config, data,
                        return_params=True)
  assert [r["row"] for r in result["rows"]] == ["linear probe", "freeze block0", "full fine-tune",
                                                "from scratch"]
  assert [r["frozen_stages"] for r in result["rows"]] == [2, 1, 0, None]
  assert result["rows"][0]["trainable_encoder_params"] == 0
  assert all(0.0 <= r["top1"] <= 1.0 for r in result["rows"])
  pretrained = state.params["encoder"]
  for row in result["rows"][:3]:
    for name, sub in pretrained.items():
      same = all(np.asarray(a).tobytes() == np.asarray(b).tobytes()
                 for a, b in zip(jax.tree.leaves(sub), jax.tree.leaves(row["params"][name])))
      assert same == (name in row["frozen"]), (row["row"], name)  # frozen exact, others trained


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  """One finished smoke run (probe seeds 2, transfer to digits)."""
  config = load_config("fmnist_infonce", "smoke")
  config.devices = 2
  config.probe.raw_pixel_baseline = False
  config.transfer.dataset = "digits"
  config.transfer.epochs = 1
  config.transfer.train_subset = 256
  workdir = tmp_path_factory.mktemp("runs") / "t0.5"
  pretrain_cli.run(config, workdir)
  return workdir


def test_run_report_has_every_section(smoke_run):
  report = json.loads((smoke_run / "report.json").read_text())
  assert {"align", "uniform"} <= set(report["projector"])
  assert set(report["invariance"]) >= {"flip", "scale"}
  assert {"pair_cos", "random_cos", "score"} <= set(report["invariance"]["flip"])
  # The first geometry.images held-out images (the smoke config's 256) for both.
  assert report["align_uniform_protocol"]["num_images"] == 256
  assert report["invariance"]["protocol"]["num_images"] == 256
  assert report["transfer"]["dataset"] == "digits" and len(report["transfer"]["rows"]) == 4
  dims = report["rankme"]["protocol"]["dims"]
  assert 1 <= report["rankme"]["encoder"] <= dims["encoder"]
  assert 1 <= report["rankme"]["projector"] <= dims["projector"]
  assert report["lidar"]["encoder"] >= 1 and report["lidar"]["protocol"]["views"] >= 2
  assert report["collapse"]["features"] == "projector" and "collapsed" in report["collapse"]
  markdown = (smoke_run / "report.md").read_text()
  assert "RankMe, encoder" in markdown and "LiDAR, encoder" in markdown
  assert "Transfer to digits: freeze vs fine-tune" in markdown and "invariance to flip" in markdown
  for plot in ("align_uniform", "invariance", "transfer"):
    assert (smoke_run / "plots" / f"{plot}.png").exists()


def _evaluate_cli(*args):
  return subprocess.run([sys.executable, "-m", "ssljax.evaluate", *args], cwd=ROOT, text=True,
                        capture_output=True, timeout=600)


def test_evaluate_cli_reruns_the_evaluation_from_the_checkpoint(smoke_run, tmp_path):
  run = tmp_path / "run"
  shutil.copytree(smoke_run, run)
  before = json.loads((run / "report.json").read_text())
  (run / "report.json").unlink()
  result = _evaluate_cli(f"--workdir={run}", "--config.probe.seeds=3", "--config.transfer.dataset=",
                         "--config.cpu_devices=2")
  assert result.returncode == 0, result.stderr[-2000:]
  after = json.loads((run / "report.json").read_text())
  assert after["pretrain"]["evaluated_from_checkpoint"] == 8
  assert after["linear_probe"]["seeds"] == 3 and "transfer" not in after
  # Same checkpoint, same protocol: the first seeds and the geometry reproduce exactly.
  assert after["linear_probe"]["top1_per_seed"][:2] == before["linear_probe"]["top1_per_seed"]
  assert after["align"] == pytest.approx(before["align"], rel=1e-5)
  assert after["invariance"]["flip"]["score"] == pytest.approx(before["invariance"]["flip"]["score"],
                                                               rel=1e-4)


def test_evaluate_cli_without_a_run_is_one_line(tmp_path):
  result = _evaluate_cli(f"--workdir={tmp_path}")
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path} has no config.json")


def _variant(run, target, temperature, top1):
  """A copy of ``run`` as if trained at another temperature and probed to ``top1``."""
  shutil.copytree(run, target)
  for name, path, value in (("config.json", "objectives.infonce.temperature", temperature),
                            ("report.json", "linear_probe.top1", top1)):
    document = json.loads((target / name).read_text())
    node = document
    *parents, leaf = path.split(".")
    for key in parents:
      node = node[key]
    node[leaf] = value
    (target / name).write_text(json.dumps(document))
  return target


def test_comparison_report_sorts_runs_by_probe_top1(smoke_run, tmp_path):
  # Three run directories with known order: the real run and two variants around it.
  real = json.loads((smoke_run / "report.json").read_text())["linear_probe"]["top1"]
  worse = _variant(smoke_run, tmp_path / "worse", 0.9, 0.05)
  better = _variant(smoke_run, tmp_path / "better", 0.1, 0.99)
  document = compare.write_comparison([worse, smoke_run, better], tmp_path / "cmp")
  top1 = [r["probe_top1"] for r in document["runs"]]
  assert top1 == [0.99, real, 0.05]
  assert [r["differs"]["objectives.infonce.temperature"] for r in document["runs"]] == [0.1, 0.5, 0.9]
  saved = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
  assert [r["run"] for r in saved["runs"]] == [r["run"] for r in document["runs"]]
  markdown = (tmp_path / "cmp" / "comparison.md").read_text()
  assert markdown.index(document["runs"][0]["run"]) < markdown.index("worse")
  for plot in ("probe", "align_uniform", "invariance", "transfer"):
    assert (tmp_path / "cmp" / "plots" / f"comparison_{plot}.png").exists(), plot
  cli = subprocess.run([sys.executable, "-m", "ssljax.compare", str(smoke_run), str(better),
                        f"--out={tmp_path / 'cli'}"], cwd=ROOT, text=True, capture_output=True,
                       timeout=300)
  assert cli.returncode == 0, cli.stderr[-2000:]
  assert "best by probe top-1: " in cli.stdout and "better (0.9900)" in cli.stdout
  assert (tmp_path / "cli" / "comparison.md").exists()


def test_report_tables_and_plots_go_to_wandb(smoke_run, tmp_path):
  """With W&B on (offline here), a run's figures/transfer tables and plots, and a comparison's
  table and plots, are logged as wandb.Table / wandb.Image."""
  from ssljax.evaluate.report import log_report
  from ssljax.tracking import MetricsWriter
  run = tmp_path / "run"
  shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("checkpoints", "wandb*"))
  writer = MetricsWriter(run, {}, {"mode": "offline", "project": "ssljax"})
  log_report(writer, json.loads((run / "report.json").read_text()), run)
  writer.close()
  media = {p.name.split("_0_")[0] for p in run.glob("wandb/offline-run-*/files/media/images/plots/*")}
  assert {"align_uniform", "invariance", "transfer", "probe_accuracy"} <= media
  tables = {p.parent.name for p in run.glob("wandb/offline-run-*/files/media/table/report/*")}
  assert tables and list(run.glob("wandb/offline-run-*/files/media/table/report/transfer*"))
  document = compare.write_comparison([run], tmp_path / "cmp")
  compare.log_comparison(document, "offline")
  assert list((tmp_path / "cmp").glob("wandb/offline-run-*/files/media/table/comparison/table*"))


def test_importing_the_report_modules_leaves_matplotlib_alone():
  # A library must not pick a backend (or load pyplot) for the program that imports it.
  code = ("import sys, matplotlib; before = matplotlib.rcParams._get_backend_or_none()\n"
          "import ssljax.compare, ssljax.evaluate.report, ssljax.evaluate.plots\n"
          "assert matplotlib.rcParams._get_backend_or_none() == before, 'backend set'\n"
          "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]


def test_one_declaration_per_figure_feeds_report_md_the_comparison_and_wandb():
  from ssljax.evaluate import tables
  from ssljax.evaluate.figures import wandb_summary
  report = {
      "dataset": "digits", "objective": "infonce", "encoder": "cnn",
      "pretrain": {"steps": 8, "epochs": 0.5, "wall_s": 3.0, "images_per_s": 10.0, "devices": 2,
                   "final_loss": 2.5},
      "linear_probe": {"top1": 0.9, "top1_ci95": 0.01, "seeds": 2, "features": "pooled",
                       "val_top1": 0.8, "chosen": {"lr": 0.1, "wd": 0.0}},
      "linear_probes": {"pooled": {"top1": 0.9, "top1_ci95": 0.01},
                        "last_stage": {"top1": 0.85, "top1_ci95": 0.02}},
      "knn": {"top1": 0.7, "k": 20, "temperature": 0.1, "features": "pooled"},
      "random_init": {"linear_probe": {"top1": 0.8}},
      "invariance": {"flip": {"score": 0.5, "pair_cos": 0.9, "random_cos": 0.8},
                     "protocol": {"pairs": 3}},
      "align": 0.1, "uniform": -1.0}
  rows = dict(tables.figure_rows(report))
  assert rows["pretrain steps / epochs"] == "8 / 0.50"
  assert (rows["linear probe top-1 (pooled features, 2 seeds, 95% CI)"]
          == "0.9000 ± 0.0100 — untrained encoder 0.8000 (+0.1000)")
  assert rows["probe validation top-1 (chose lr, wd)"] == "0.8000 (lr=0.1, wd=0.0)"
  assert rows["linear probe top-1 (last_stage features)"] == "0.8500 ± 0.0200"
  assert "linear probe top-1 (pooled features)" not in rows  # the headline is not repeated
  assert rows["kNN top-1 (k=20, τ=0.1, pooled)"] == "0.7000"
  assert rows["invariance to flip: score (cos pair vs random)"] == "0.500 (0.900 vs 0.800)"
  assert not any("protocol" in label or "online" in label or "transfer" in label for label in rows)
  row = tables.comparison_row({"name": "r", "dir": "d", "report": report}, {},
                              tables.comparison_figures([report]))
  assert (row["probe_top1"], row["probe_top1_ci95"], row["invariance_flip"]) == (0.9, 0.01, 0.5)
  assert row["cells"]["probe_top1"] == "0.9000 ± 0.0100"  # the same format, no control column
  summary = wandb_summary(report)
  assert {k: summary[k] for k in ("probe/top1", "probe/top1_ci95", "knn/top1", "invariance/flip",
                                  "align")} == {"probe/top1": 0.9, "probe/top1_ci95": 0.01,
                                                "knn/top1": 0.7, "invariance/flip": 0.5,
                                                "align": 0.1}
