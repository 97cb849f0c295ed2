"""Never lose a run (issue 7): a real ``kill -9`` then the same command gives bit-identical final
parameters; SIGTERM checkpoints and exits 0 with the command that resumes; a kill during a save, a
leftover temporary save and a corrupt latest checkpoint all leave a restorable previous one.

The end-to-end tests run the CLI in subprocesses (JAX start-up and compilation dominate each one),
so there are three of them, on the smoke config and the digits dataset.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, load_config
from ssljax.errors import UserError
from ssljax.tracking import MetricsWriter, read_metrics
from ssljax.train import loop
from ssljax.train.checkpoint import Checkpoints, fingerprint
from ssljax.train.state import TrainState

# The smoke config on scikit-learn's digits (the smallest real dataset: evaluation is quick), long
# enough that a kill lands mid-run (tens of steps/s after the compile).
LONG = ["--config=experiments/fmnist_infonce.py:smoke", "--config.dataset=digits",
        "--config.cpu_devices=2", "--config.probe.raw_pixel_baseline=False",
        "--config.probe.seeds=1", "--config.steps=240", "--config.checkpoint_every=10",
        "--config.log_every=10"]


def _command(workdir, args):
  return [sys.executable, "-m", "ssljax.pretrain", *args, f"--workdir={workdir}"]


def _run(workdir, args, timeout=600):
  result = subprocess.run(_command(workdir, args), cwd=ROOT, text=True, capture_output=True,
                          timeout=timeout)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _start(workdir, args):
  """The CLI in the background; its output goes to files next to ``workdir`` (a pipe nobody reads
  would fill up with progress bars and stall it)."""
  out, err = (open(f"{workdir}.{name}", "w+") for name in ("stdout", "stderr"))
  process = subprocess.Popen(_command(workdir, args), cwd=ROOT, text=True, stdout=out, stderr=err)
  process.output = lambda: (out.seek(0) or out.read(), err.seek(0) or err.read())
  return process


def _wait_for(predicate, process, timeout=300):
  deadline = time.monotonic() + timeout
  while not predicate():
    assert process.poll() is None, "the run ended before it could be interrupted"
    assert time.monotonic() < deadline, "timed out waiting for the run"
    time.sleep(0.02)


def _steps(checkpoint_dir):
  return sorted(int(p.name) for p in checkpoint_dir.iterdir() if p.name.isdigit()) \
      if checkpoint_dir.is_dir() else []


def _fingerprint(workdir):
  return json.loads((workdir / "report.json").read_text())["pretrain"]["params_fingerprint"]


def _uninterrupted_fingerprint(workdir):
  """LONG's pretraining run in this process (no evaluation, no second JAX start-up): 2 of the 8
  test devices compile the same program as the CLI's 2 devices, so the bits are the same."""
  config = load_config("fmnist_infonce", "smoke")
  config.dataset, config.devices, config.steps = "digits", 2, 240
  config.checkpoint_every = config.log_every = 10
  workdir.mkdir()
  exp = loop.build_experiment(config)
  _, summary = loop.pretrain(exp, workdir, MetricsWriter(workdir, {}, config.wandb))
  return summary["params_fingerprint"]


def test_kill9_then_the_same_command_gives_bit_identical_params(tmp_path):
  reference, tmp_path = tmp_path / "reference", tmp_path / "run"
  run = _start(tmp_path, LONG)
  _wait_for(lambda: _steps(tmp_path / "checkpoints"), run)  # a checkpoint is complete
  run.send_signal(signal.SIGKILL)
  run.wait()
  assert run.returncode == -signal.SIGKILL
  killed_at = max(r["step"] for r in read_metrics(tmp_path))  # flushed lines survive a kill -9
  assert 10 <= killed_at < 240
  resumed = _run(tmp_path, LONG)
  assert "Resuming from the checkpoint at step" in resumed.stdout
  assert _fingerprint(tmp_path) == _uninterrupted_fingerprint(reference)
  report = json.loads((tmp_path / "report.json").read_text())["pretrain"]
  assert 10 <= report["resumed_from_step"] < 240
  logged = [r["step"] for r in read_metrics(tmp_path)]
  assert logged == list(range(10, 241, 10))  # steps after the checkpoint were not logged twice


def test_sigterm_finishes_the_step_checkpoints_and_prints_how_to_resume(tmp_path):
  tmp_path = tmp_path / "run"
  run = _start(tmp_path, LONG)
  _wait_for(lambda: read_metrics(tmp_path), run)  # training is under way
  run.send_signal(signal.SIGTERM)
  run.wait(timeout=300)
  out, err = run.output()
  assert run.returncode == 0, err[-3000:]
  stopped = [line for line in out.splitlines() if line.startswith("stopped by SIGTERM after step")]
  assert stopped, out
  step = int(stopped[0].split()[5])
  assert stopped[0] == (f"stopped by SIGTERM after step {step} of 240; checkpoint saved in "
                        f"{tmp_path / 'checkpoints'}. Resume with:")
  assert _steps(tmp_path / "checkpoints")[-1] == step  # the step in flight, not the last periodic
  resume = out.splitlines()[out.splitlines().index(stopped[0]) + 1].strip()
  assert resume.startswith(f"cd {ROOT} && {sys.executable} -m ssljax.pretrain --config=")
  assert resume.endswith(f"--workdir={tmp_path}")
  assert not (tmp_path / "report.json").exists()


def _tiny_state(step, value=1.0, size=4):
  return TrainState(step=jnp.array(step, jnp.int32), params={"w": jnp.full((size,), value)},
                    batch_stats={}, opt_states={}, rng=jax.random.PRNGKey(0),
                    nonfinite={"count": jnp.zeros((), jnp.int32)})


def _saved(directory, steps, keep=3):
  checkpoints = Checkpoints(directory, keep=keep)
  for step in steps:
    checkpoints.save(_tiny_state(step, float(step)))
  checkpoints.close()


def test_a_kill_during_a_save_leaves_the_previous_checkpoint(tmp_path):
  # A process that saves 64 MB states in a loop; kill -9 it while a save is being written.
  script = textwrap.dedent(f"""
      import jax, jax.numpy as jnp
      from ssljax.train.checkpoint import Checkpoints
      from ssljax.train.state import TrainState
      checkpoints = Checkpoints({str(tmp_path)!r}, keep=100)
      for step in range(1, 1000):
        state = TrainState(step=jnp.array(step, jnp.int32),
                           params={{"w": jnp.full((16_000_000,), float(step))}}, batch_stats={{}},
                           opt_states={{}}, rng=jax.random.PRNGKey(0),
                           nonfinite={{"count": jnp.zeros((), jnp.int32)}})
        checkpoints.save(state)
        checkpoints.manager.wait_until_finished()
  """)
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  torn = lambda: [p for p in tmp_path.iterdir() if ".orbax-checkpoint-tmp" in p.name]
  for _ in range(3):  # rarely the kill lands between two saves; then kill the next one
    saver = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env,
                             stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _steps(tmp_path) and torn(), saver, timeout=120)
    saver.send_signal(signal.SIGKILL)
    saver.communicate()
    if torn():
      break
  assert torn()  # a save cut short
  complete = _steps(tmp_path)
  checkpoints = Checkpoints(tmp_path)
  template = TrainState(step=jnp.zeros((), jnp.int32), params={"w": jnp.zeros((16_000_000,))},
                        batch_stats={}, opt_states={}, rng=jax.random.PRNGKey(0),
                        nonfinite={"count": jnp.zeros((), jnp.int32)})
  state, step = checkpoints.restore_latest(template)
  checkpoints.close()
  assert step == complete[-1] and int(state.step) == step
  assert float(state.params["w"][0]) == step
  assert not any(".orbax-checkpoint-tmp" in p.name for p in tmp_path.iterdir())  # cleaned up


def test_a_leftover_temporary_save_is_ignored_and_removed(tmp_path):
  _saved(tmp_path, [5, 10])
  torn = tmp_path / "15.orbax-checkpoint-tmp-1712345678"
  torn.mkdir()
  (torn / "_CHECKPOINT_METADATA").write_text("{")
  checkpoints = Checkpoints(tmp_path)
  state, step = checkpoints.restore_latest(_tiny_state(0, 0.0))
  checkpoints.close()
  assert step == 10 and float(state.params["w"][0]) == 10.0
  assert not torn.exists()


def test_a_corrupt_latest_checkpoint_is_reported_and_the_previous_one_used(tmp_path, capsys):
  _saved(tmp_path, [5, 10])
  for f in (tmp_path / "10").rglob("*"):
    if f.is_file() and f.parent.name == "d":  # the OCDBT data files
      f.write_bytes(b"\0" * f.stat().st_size)
  checkpoints = Checkpoints(tmp_path)
  state, step = checkpoints.restore_latest(_tiny_state(0, 0.0))
  assert step == 5 and float(state.params["w"][0]) == 5.0
  warning = capsys.readouterr().err.strip().splitlines()
  assert len(warning) == 1 and warning[0].startswith(
      f"warning: checkpoint {tmp_path / '10'} is unreadable (")
  assert warning[0].endswith("moved it to 10.unreadable and resumed from step 5 instead")
  checkpoints.save(_tiny_state(10, 7.0))  # the step number is free again
  checkpoints.close()
  assert (tmp_path / "10.unreadable").is_dir() and _steps(tmp_path) == [5, 10]


def test_no_restorable_checkpoint_is_an_error_that_moves_nothing(tmp_path):
  _saved(tmp_path, [5])
  checkpoints = Checkpoints(tmp_path)
  with pytest.raises(UserError, match=rf"no checkpoint in {tmp_path} can be restored \(step 5: "):
    checkpoints.restore_latest(TrainState(step=jnp.zeros((), jnp.int32),
                                          params={"other": jnp.zeros((3,))}, batch_stats={},
                                          opt_states={}, rng=jax.random.PRNGKey(0),
                                          nonfinite={"count": jnp.zeros((), jnp.int32)}))
  checkpoints.close()
  assert _steps(tmp_path) == [5]


def test_fingerprint_is_order_independent_and_bit_exact():
  a = {"x": np.arange(4, dtype=np.float32), "y": {"z": np.ones((2, 2), np.float32)}}
  b = {"y": {"z": np.ones((2, 2), np.float32)}, "x": np.arange(4, dtype=np.float32)}
  assert fingerprint(a) == fingerprint(b)
  c = {"x": np.nextafter(a["x"], np.float32(9)), "y": a["y"]}
  assert fingerprint(a) != fingerprint(c)
  assert fingerprint(a) != fingerprint({"x": a["x"].astype(np.float64), "y": a["y"]})
