"""Sweeps and launch scripts: every sweep YAML's parameters are config keys and each expanded command
parses as ssljax.pretrain will parse it; ${args} expands exactly as W&B's agent does; the W&B agent
runs on this interpreter; local random sweeps draw from each parameter's distribution (seeded), bayes
is refused locally; the local grid runner produces one run directory per point and the comparison
report; launch dry runs print the commands they would run."""
import json
import math
import os
import pathlib
import random
import re
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from ssljax import sweep as sweeps
from ssljax.errors import UserError
from ssljax.models import ENCODERS
from ssljax.objectives import OBJECTIVES

SWEEPS = sorted((ROOT / "experiments" / "sweeps").glob("*.yaml"))
REGISTRIES = {"config.objective": OBJECTIVES, "config.encoder": ENCODERS}


def test_the_required_sweeps_exist():
  names = {p.stem for p in SWEEPS}
  assert {"infonce_lr_temperature", "objective_encoder"} <= names
  lr_temp = sweeps.load_sweep(ROOT / "experiments/sweeps/infonce_lr_temperature.yaml")
  assert set(lr_temp["parameters"]) == {"config.optimizer.lr", "config.objectives.infonce.temperature"}
  grid = sweeps.load_sweep(ROOT / "experiments/sweeps/objective_encoder.yaml")
  assert set(grid["parameters"]) == {"config.objective", "config.encoder"}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_parameters_are_config_keys_and_commands_parse(path):
  sweep = sweeps.load_sweep(path)
  assert sweep["metric"] == {"name": "probe/top1", "goal": "maximize"}
  assert sweep["command"][:4] == ["${env}", "${interpreter}", "-m", "ssljax.pretrain"]
  assert any(a.startswith("--workdir=") and a.endswith("/$WANDB_RUN_ID") for a in sweep["command"])
  for name, spec in sweep["parameters"].items():
    for value in spec.get("values", [spec.get("value")]):
      if name in REGISTRIES:
        assert value in REGISTRIES[name], f"{path.name}: {name}={value} is not registered"
  for params in sweeps.grid(sweep):
    config = sweeps.parse_command(sweeps.expand_command(sweep, params))  # raises if it does not
    for name, value in params.items():
      got = config
      for part in name.split(".")[1:]:
        got = got[part]
      assert got == (tuple(value) if isinstance(value, list) else value), (name, value)


def test_args_expand_exactly_as_the_wandb_agent_does():
  from wandb.sdk.launch.sweeps.utils import create_sweep_command_args
  sweep = sweeps.load_sweep(ROOT / "experiments/sweeps/infonce_invariances.yaml")
  params = sweeps.grid(sweep)[-1]
  ours = sweeps.expand_command(sweep, params, interpreter="python")
  theirs = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})["args"]
  assert ours[-len(theirs):] == theirs
  assert ours[:3] == ["python", "-m", "ssljax.pretrain"]


def test_bad_sweeps_fail_in_one_line(tmp_path):
  bad = tmp_path / "bad.yaml"
  bad.write_text(yaml.safe_dump({"parameters": {"optimizer.lr": {"values": [1]}},
                                 "command": ["${args}"]}))
  with pytest.raises(UserError, match="must be a config path"):
    sweeps.load_sweep(bad)
  typo = {"name": "t", "parameters": {"config.optimizr.lr": {"values": [0.1]}},
          "command": ["${interpreter}", "-m", "ssljax.pretrain",
                      "--config=experiments/fmnist_infonce.py", "${args}"]}
  with pytest.raises(UserError, match="does not parse"):
    sweeps.parse_command(sweeps.expand_command(typo, sweeps.grid(typo)[0]))


def _without_wandb(tmp_path):
  env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
  return {**env, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT), "SSLJAX_PYTHON": sys.executable}


def test_local_grid_runner_writes_runs_and_the_comparison(tmp_path):
  tiny = tmp_path / "tiny.yaml"
  tiny.write_text(yaml.safe_dump({
      "name": "tiny", "method": "grid", "metric": {"name": "probe/top1", "goal": "maximize"},
      "parameters": {"config.objectives.infonce.temperature": {"values": [0.2, 0.5]}},
      "command": ["${env}", "${interpreter}", "-m", "ssljax.pretrain",
                  "--config=experiments/fmnist_infonce.py:smoke", "--workdir=runs/x/$WANDB_RUN_ID",
                  "${args}"]}))
  result = subprocess.run(
      ["bash", "launch/sweep.sh", str(tiny), f"--root={tmp_path / 'sweeps'}", "--",
       "--config.steps=2", "--config.probe.seeds=1", "--config.probe.raw_pixel_baseline=False",
       "--config.probe.train_subset=512", "--config.cpu_devices=2", "--config.log_every=1",
       # What this test checks is the runner and the comparison, not the control's figures.
       "--config.probe.random_init=False", "--config.probe.extra_features=()"],
      cwd=ROOT, env=_without_wandb(tmp_path), text=True, capture_output=True, timeout=900)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  assert "W&B unavailable" in result.stdout
  out = tmp_path / "sweeps" / "tiny"
  for name in ("temperature=0.2", "temperature=0.5"):
    assert json.loads((out / name / "config.json").read_text())["steps"] == 2
  document = json.loads((out / "comparison.json").read_text())
  assert sorted(r["run"] for r in document["runs"]) == ["temperature=0.2", "temperature=0.5"]
  top1 = [r["probe_top1"] for r in document["runs"]]
  assert top1 == sorted(top1, reverse=True)
  assert (out / "comparison.md").read_text().startswith("# Comparison of 2 runs")


def test_sweep_dry_run_prints_the_commands(tmp_path):
  path = ROOT / "experiments/sweeps/objective_encoder.yaml"
  result = subprocess.run(["bash", "launch/sweep.sh", str(path), "--dry_run", "--count=3",
                           f"--root={tmp_path}", "--", "--config.epochs=1"],
                          cwd=ROOT, env=_without_wandb(tmp_path), text=True, capture_output=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  lines = [l for l in result.stdout.splitlines() if l.startswith("[")]
  assert len(lines) == 3
  assert lines[0].endswith(f"-m ssljax.pretrain --config=experiments/fmnist_infonce.py "
                           f"--config.epochs=1 --config.objective=infonce --config.encoder=cnn "
                           f"--workdir={tmp_path}/objective_encoder/objective=infonce,encoder=cnn")
  assert not list(tmp_path.glob("objective_encoder/*"))  # nothing ran
  # With an API key it would create the W&B sweep and start an agent instead.
  env = {**_without_wandb(tmp_path), "WANDB_API_KEY": "x" * 40}
  result = subprocess.run(["bash", "launch/sweep.sh", str(path), "--dry_run", "--count=5"],
                          cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "would create a W&B sweep in ssljax: objective_encoder" in result.stdout
  assert f"then run: {sys.executable} -m wandb agent --count 5 SWEEP_ID" in result.stdout


def test_multihost_launch_dry_runs(tmp_path):
  env = {**os.environ, "SSLJAX_PYTHON": "/opt/py/bin/python"}
  slurm = subprocess.run(["bash", "launch/slurm.sbatch", "--dry-run", "experiments/fmnist_infonce.py",
                          "runs/mh", "--config.steps=100"], cwd=ROOT, env=env, text=True,
                         capture_output=True, timeout=60)
  assert slurm.returncode == 0, slurm.stderr
  assert slurm.stdout.strip() == (
      f"cd {ROOT} && srun --kill-on-bad-exit=1 /opt/py/bin/python -m ssljax.pretrain --multihost "
      "--config=experiments/fmnist_infonce.py --workdir=runs/mh --config.steps=100")
  tpu = subprocess.run(["bash", "launch/tpu_pod.sh", "--dry-run", "experiments/fmnist_infonce.py",
                        "gs://bucket/run"], cwd=ROOT, text=True, capture_output=True, timeout=60,
                       env={**os.environ, "TPU_NAME": "pod", "ZONE": "us-central2-b"})
  assert tpu.returncode == 0, tpu.stderr
  assert tpu.stdout.strip() == (
      'gcloud compute tpus tpu-vm ssh pod --zone=us-central2-b --worker=all --command="cd $HOME/ssljax'
      ' && .venv/bin/python -m ssljax.pretrain --multihost --config=experiments/fmnist_infonce.py'
      ' --workdir=gs://bucket/run"')
  missing = subprocess.run(["bash", "launch/tpu_pod.sh", "--dry-run", "a", "b"], cwd=ROOT,
                           text=True, capture_output=True, timeout=60,
                           env={k: v for k, v in os.environ.items() if k not in ("TPU_NAME", "ZONE")})
  assert missing.returncode != 0 and "TPU_NAME" in missing.stderr


def test_multihost_outside_a_cluster_is_one_line(tmp_path):
  env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JAX_", "TPU_"))}
  result = subprocess.run([sys.executable, "-m", "ssljax.pretrain", "--multihost",
                           "--config=experiments/fmnist_infonce.py:smoke", f"--workdir={tmp_path}"],
                          cwd=ROOT, env=env, text=True, capture_output=True, timeout=120)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith(
      "error: --multihost: jax.distributed.initialize() failed")


def test_the_wandb_agent_and_its_runs_use_this_interpreter():
  command, env = sweeps.agent_invocation("me/ssljax/abc123", 3,
                                         environ={"PATH": "/usr/bin:/bin", "HOME": "/home/me"})
  assert command == [sys.executable, "-m", "wandb", "agent", "--count", "3", "me/ssljax/abc123"]
  bin_dir = str(pathlib.Path(sys.executable).parent)
  assert env == {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": "/home/me"}
  # The agent starts each run as `/usr/bin/env python ...` (${env} ${interpreter}): that `python`
  # must be this interpreter, with ssljax importable, not whatever PATH had first.
  found = subprocess.run(["/usr/bin/env", "python", "-c", "import sys; print(sys.prefix)"],
                         env=env, text=True, capture_output=True, timeout=60)
  assert found.stdout.strip() == sys.prefix
  assert sweeps.agent_invocation("x", environ={"PATH": f"/bin:{bin_dir}"})[1]["PATH"] == \
      f"{bin_dir}:/bin"  # moved to the front, not repeated
  agent_help = subprocess.run(command[:4] + ["--help"], text=True, capture_output=True, timeout=120)
  assert agent_help.returncode == 0 and "SWEEP_ID" in agent_help.stdout


RANDOM = {"name": "r", "method": "random",
          "parameters": {"config.optimizer.lr": {"distribution": "log_uniform_values",
                                                 "min": 1e-5, "max": 1e-1},
                         "config.objectives.infonce.temperature": {"min": 0.05, "max": 1.0},
                         "config.batch_size": {"min": 32, "max": 40},
                         "config.optimizer.warmup_steps": {"distribution": "q_uniform",
                                                           "min": 0, "max": 100, "q": 10},
                         "config.encoder": {"values": ["cnn", "mlp"]},
                         "config.seed": {"value": 7}},
          "command": ["${env}", "${interpreter}", "-m", "ssljax.pretrain",
                      "--config=experiments/fmnist_infonce.py", "${args}"]}


def test_random_sweeps_draw_from_each_distribution_reproducibly():
  draws = sweeps.points(RANDOM, count=2000, seed=1)
  assert draws == sweeps.points(RANDOM, count=2000, seed=1)
  assert draws != sweeps.points(RANDOM, count=2000, seed=2)
  assert sweeps.points(RANDOM, count=5, seed=1) == draws[:5]  # more runs extend, never reshuffle
  lr = [d["config.optimizer.lr"] for d in draws]
  assert all(1e-5 <= x <= 1e-1 for x in lr)
  # Log-uniform: each decade equally likely (uniform would put 99% of draws in the top decade).
  decades = [sum(10.0 ** k <= x < 10.0 ** (k + 1) for x in lr) / len(lr) for k in range(-5, -1)]
  assert all(abs(f - 0.25) < 0.04 for f in decades), decades
  assert abs(sum(math.log10(x) for x in lr) / len(lr) + 3) < 0.1
  t = [d["config.objectives.infonce.temperature"] for d in draws]
  assert all(0.05 <= x <= 1.0 and isinstance(x, float) for x in t)
  assert abs(sum(t) / len(t) - 0.525) < 0.02
  batch = [d["config.batch_size"] for d in draws]  # int min/max: integers, max included (as W&B)
  assert all(isinstance(b, int) for b in batch) and set(batch) == set(range(32, 41))
  assert set(d["config.optimizer.warmup_steps"] for d in draws) == set(range(0, 101, 10))
  assert {d["config.encoder"] for d in draws} == {"cnn", "mlp"}
  assert {d["config.seed"] for d in draws} == {7}
  weighted = {"values": ["a", "b"], "probabilities": [0.9, 0.1]}
  rng = random.Random(0)
  assert sum(sweeps.sample("x", weighted, rng) == "a" for _ in range(1000)) > 850
  assert sweeps.sample("x", {"distribution": "log_uniform", "min": 0.0, "max": 1.0},
                       rng) <= math.e  # log_uniform: min/max are exponents, as on W&B


def test_a_local_random_sweep_runs_count_numbered_draws(tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(ROOT)  # the sweep's --config path is relative, as in the shipped YAMLs
  assert sweeps.run_local(RANDOM, 3, tmp_path, dry_run=True, seed=4, why="no W&B API key") == 0
  out = capsys.readouterr().out.splitlines()
  assert out[0] == "W&B unavailable (no W&B API key): running the sweep locally instead."
  runs = [l for l in out if l.startswith("[")]
  assert len(runs) == 3
  for i, (line, params) in enumerate(zip(runs, sweeps.points(RANDOM, 3, seed=4))):
    assert f"--config.optimizer.lr={params['config.optimizer.lr']} " in line
    assert f"--workdir={tmp_path}/r/r{i:03d},lr=" in line


@pytest.mark.parametrize("change, count, message", [
    ({"method": "bayes"}, 4, "method: bayes needs W&B (the Bayesian search runs on W&B's server)"),
    ({}, 0, "method: random draws runs without end (as on W&B); say how many with --count=N"),
    ({"parameters": {"config.seed": {"distribution": "normal", "mu": 0, "sigma": 1}}}, 2,
     "parameter 'config.seed': distribution 'normal' is not sampled locally (supported: constant, "),
    ({"parameters": {"config.seed": {"min": 5, "max": 5}}}, 2, "int_uniform needs min < max"),
    ({"method": "grid"}, 0, "parameter 'config.optimizer.lr' is a distribution"),
])
def test_what_a_local_sweep_cannot_do_is_one_line(change, count, message):
  with pytest.raises(UserError, match=re.escape(message)):
    sweeps.points({**RANDOM, **change}, count)


def test_a_local_bayes_sweep_is_refused_on_the_command_line(tmp_path):
  path = tmp_path / "bayes.yaml"
  path.write_text(yaml.safe_dump({**RANDOM, "method": "bayes"}))
  result = subprocess.run([sys.executable, "-m", "ssljax.sweep", str(path), "--count=2"],
                          cwd=ROOT, env=_without_wandb(tmp_path), text=True, capture_output=True,
                          timeout=120)
  assert result.returncode == 2 and result.stdout == ""
  assert result.stderr.strip().splitlines() == [
      "error: method: bayes needs W&B (the Bayesian search runs on W&B's server); set "
      "WANDB_API_KEY or run `wandb login`, or use method: random (with --count=N) or grid to run "
      "it here"]
