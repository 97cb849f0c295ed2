"""The suites the repository ships (experiments/suites/): every objective with a config has a row,
and each suite's rows run the budget, encoder and optimizer its docstring states. Their commands
are parsed, never run."""
import os

import pytest

from conftest import ROOT
from ssljax.benchmark.suite import check_commands, load_suite, plan


def test_the_shipped_suite_has_a_row_for_every_objective_with_a_config(monkeypatch):
  monkeypatch.chdir(ROOT)  # its experiment paths are relative to the repository root
  from ssljax.objectives import OBJECTIVES
  suite = load_suite(ROOT / "experiments" / "suites" / "fmnist_cnn.py")
  used = {os.path.basename(r.experiment.split(":")[0]) for r in suite.rows}
  with_config = [name for name in OBJECTIVES if (ROOT / "experiments" / f"fmnist_{name}.py").exists()]
  excused = dict(suite.config.get("not_in_table", {}))
  missing = [name for name in with_config if f"fmnist_{name}.py" not in used and name not in excused]
  assert with_config and not missing, (f"add a row(...) line for {', '.join(missing)} to "
                                       "experiments/suites/fmnist_cnn.py")
  assert suite.seeds == (0, 1, 2) and suite.config.epochs == 1.0
  configs = check_commands(plan(suite, "runs/suites", seeds=[0]))  # every row's command parses
  assert {c.encoders.cnn.widths for c in configs} == {(32, 64, 128, 256)}
  assert {c.batch_size for c in configs} == {128} and {c.epochs for c in configs} == {1.0}


def test_the_quickstart_budget_suite_runs_every_joint_embedding_objective_at_the_quickstarts_budget(
    monkeypatch):
  monkeypatch.chdir(ROOT)
  from ssljax.base_config import load_experiment
  quickstart = load_experiment(ROOT / "experiments" / "fmnist_infonce.py")
  suite = load_suite(ROOT / "experiments" / "suites" / "fmnist_quickstart_budget.py")
  assert {"infonce", "vicreg", "barlow_twins", "lejepa", "byol", "simsiam", "moco_v3",
          "dino"} <= {r.name for r in suite.rows}
  configs = check_commands(plan(suite, "runs/suites"))
  assert {c.epochs for c in configs} == {quickstart.epochs}
  assert {c.batch_size for c in configs} == {quickstart.batch_size}
  assert {c.encoders.cnn.widths for c in configs} == {tuple(quickstart.encoders.cnn.widths)}


def test_the_vit_suite_runs_each_row_with_its_papers_vit_learning_rate(monkeypatch):
  monkeypatch.chdir(ROOT)
  from ssljax.base_config import load_experiment
  mae = load_experiment(ROOT / "experiments" / "fmnist_mae.py")
  suite = load_suite(ROOT / "experiments" / "suites" / "fmnist_vit_tiny.py")
  assert [r.name for r in suite.rows] == ["mae", "infonce", "dino"]
  configs = dict(zip([r.name for r in suite.rows], check_commands(plan(suite, "runs/suites"))))
  assert {(c.encoder, c.encoders.vit_tiny.patch_size) for c in configs.values()} == {("vit_tiny", 4)}
  assert {c.batch_size for c in configs.values()} == {128}
  assert {c.epochs for c in configs.values()} == {0.5}
  assert {c.optimizer.name for c in configs.values()} == {"adamw"}
  # The papers' rates per 256 images, at batch 128: MAE 1.5e-4, MoCo v3 1.5e-4, DINO 5e-4.
  expected = {"mae": (7.5e-5, 0.05, 0.0), "infonce": (7.5e-5, 0.1, 0.0), "dino": (2.5e-4, 0.04, 3.0)}
  for name, c in configs.items():
    got = (c.optimizer.lr, c.optimizer.weight_decay, c.optimizer.grad_clip)
    assert got == pytest.approx(expected[name]), name
  assert mae.optimizer.lr == pytest.approx(1.5e-4 * mae.batch_size / 256)
