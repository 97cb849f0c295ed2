"""Provenance: versions, devices, git state and command line in config.json; never an environment
variable; null (not an error) outside a git checkout; and a run still resumes when the provenance
saved with its checkpoints differs from the new invocation's."""
import importlib.metadata
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import jax
import pytest

from conftest import load_config
from ssljax import pretrain as pretrain_cli
from ssljax import provenance as prov
from ssljax.rundir import check_resumable, resolved_config, write_config

KEYS = {"versions", "python", "backend", "device_kind", "device_count", "process_count",
        "git_commit", "git_dirty", "command"}


def test_provenance_keys_and_values():
  record = prov.provenance(["python", "-m", "ssljax.pretrain", "--workdir=runs/a b"])
  assert set(record) == KEYS
  assert set(record["versions"]) == {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint",
                                     "grain", "numpy"}
  assert record["versions"]["jax"] == importlib.metadata.version("jax") == jax.__version__
  assert record["python"] == ".".join(map(str, sys.version_info[:3]))
  assert record["backend"] == "cpu" and record["device_kind"] == jax.devices()[0].device_kind
  assert record["device_count"] == jax.device_count() and record["process_count"] == 1
  assert record["command"] == "python -m ssljax.pretrain '--workdir=runs/a b'"  # shell-quoted
  assert prov.provenance()["command"] == shlex.join(sys.argv)  # default: this process's
  json.dumps(record)  # JSON as it is


def test_no_environment_variable_reaches_provenance(monkeypatch):
  secret = "fake-secret-9c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"
  monkeypatch.setenv("WANDB_API_KEY", secret)
  monkeypatch.setenv("SSLJAX_TEST_TOKEN", secret)
  text = json.dumps(prov.provenance(["python"]))
  assert secret not in text and "WANDB" not in text and os.environ["HOME"] not in text


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_and_dirty_state(tmp_path):
  git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True,
                                  capture_output=True, text=True).stdout.strip()
  git("init", "-q")
  (tmp_path / "f.py").write_text("x = 1\n")
  git("add", "f.py")
  git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
  head = git("rev-parse", "HEAD")
  assert prov.git_state(tmp_path) == (head, False)
  (tmp_path / "new.py").write_text("")  # untracked files do not make the tree dirty
  assert prov.git_state(tmp_path) == (head, False)
  (tmp_path / "f.py").write_text("x = 2\n")
  assert prov.git_state(tmp_path) == (head, True)
  (tmp_path / "pkg").mkdir()  # e.g. site-packages inside some unrelated repository
  assert prov.git_state(tmp_path / "pkg") == (None, None)


def test_outside_a_git_checkout_or_without_git_it_is_null(tmp_path, monkeypatch):
  monkeypatch.setattr(prov, "SOURCE_ROOT", tmp_path)  # an installed copy: no checkout around it
  record = prov.provenance(["x"])
  assert record["git_commit"] is None and record["git_dirty"] is None
  monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no git program at all
  monkeypatch.setattr(prov, "SOURCE_ROOT", pathlib.Path(prov.__file__).resolve().parents[1])
  assert prov.git_state(prov.SOURCE_ROOT) == (None, None)


def test_config_json_holds_the_provenance_and_resuming_ignores_it(smoke_config, tmp_path):
  resolved = resolved_config(smoke_config)
  write_config(tmp_path, resolved)
  saved = json.loads((tmp_path / "config.json").read_text())
  assert set(saved["provenance"]) == KEYS
  assert {k: v for k, v in saved.items() if k != "provenance"} == json.loads(json.dumps(resolved))
  # The run was started elsewhere: other commit, command and devices. It still resumes here.
  write_config(tmp_path, resolved, {**saved["provenance"], "git_commit": "0" * 40,
                                    "command": "python -m ssljax.pretrain --other", "device_count": 64})
  (tmp_path / "checkpoints" / "4").mkdir(parents=True)
  check_resumable(tmp_path, resolved)
  check_resumable(tmp_path, {**resolved, "provenance": {"git_commit": "1" * 40}})


def test_a_run_resumes_through_the_cli_path_with_a_different_provenance(tmp_path, capsys,
                                                                         monkeypatch):
  from ssljax.evaluate import run as evaluation
  # What is tested is the run directory and the resume; the evaluators have tests of their own.
  monkeypatch.setattr(evaluation, "evaluate_and_report",
                      lambda exp, state, workdir, summary, *_: {"pretrain": summary})
  config = load_config("fmnist_infonce", "smoke")
  config.dataset, config.devices, config.steps, config.checkpoint_every = "digits", 2, 2, 2
  pretrain_cli.run(config, tmp_path)
  path = tmp_path / "config.json"
  saved = json.loads(path.read_text())
  path.write_text(json.dumps({**saved, "provenance": {**saved["provenance"], "git_commit": "0" * 40,
                                                      "command": "elsewhere"}}))
  capsys.readouterr()
  report = pretrain_cli.run(config, tmp_path)
  assert "Resuming from the checkpoint at step 2" in capsys.readouterr().out
  assert report["pretrain"]["resumed_from_step"] == 2
  assert json.loads(path.read_text())["provenance"]["command"] != "elsewhere"  # this invocation's
