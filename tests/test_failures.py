"""Every bad input gets one line that says what is wrong and what to do (issue 7): one test per
failure mode, asserting the message a user sees. Dataset-file failures (missing/corrupt IDX,
npz of the wrong dtype/shape, pickled npz) are pinned in test_data.py."""
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import jax
import numpy as np
import pytest

from conftest import ROOT, load_config
from ssljax import pretrain as pretrain_cli
from ssljax.base_config import base_config
from ssljax.config_checks import check_config
from ssljax.data.sources import load_dataset
from ssljax.errors import UserError
from ssljax.rundir import check_resumable, claim_workdir, resolved_config
from ssljax.tracking import MetricsWriter
from ssljax.train import loop


def _cli(*args, env=None, timeout=300):
  return subprocess.run([sys.executable, "-m", "ssljax.pretrain", *args], cwd=ROOT, text=True,
                        capture_output=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def digits():
  return load_dataset("digits")  # 8x8: small enough to trip encoders that downsample


@pytest.mark.parametrize("key, value, message", [
    ("objective", "simclr9", "unknown objective 'simclr9'; valid names: "),
    ("encoder", "resnet9000", "unknown encoder 'resnet9000'; valid names: alexnet, cnn, "),
    ("dataset", "imagenet", "unknown dataset source 'imagenet'; valid names: digits, "),
])
def test_unknown_names_list_the_valid_ones(smoke_config, key, value, message):
  smoke_config[key] = value
  with pytest.raises(UserError) as error:
    check_config(smoke_config)
  assert str(error.value).startswith(message)


@pytest.mark.parametrize("key, value, message", [
    ("batch_size", 0, "batch_size must be >= 1, got 0"),
    ("epochs", -1.0, "epochs must be >= 0, got -1.0"),
    ("optimizer.name", "adamx", "optimizer.name 'adamx' unknown; valid: sgd, adam, adamw, lars"),
    ("views.scale", (0.0, 1.5), "views.scale must be a pair low <= high in (0, 1], got (0.0, 1.5)"),
    ("wandb.mode", "sometimes", "wandb.mode 'sometimes' unknown; valid: auto, online, offline, "),
    ("nonfinite", "ignore", "nonfinite 'ignore' unknown; valid: stop, skip"),
    ("log_every", 2.5, "log_every must be an integer, got 2.5 (float)"),
])
def test_invalid_config_values_name_the_key(smoke_config, key, value, message):
  node, leaf = smoke_config, key.split(".")[-1]
  for part in key.split(".")[:-1]:
    node = node[part]
  with node.ignore_type():  # a config file may set any type; the CLI would refuse some earlier
    node[leaf] = value
  with pytest.raises(UserError) as error:
    check_config(smoke_config)
  assert message in str(error.value)


def test_several_problems_are_reported_at_once(smoke_config):
  smoke_config.batch_size, smoke_config.knn.k = 0, 0
  with pytest.raises(UserError, match=r"batch_size must be >= 1, got 0; knn.k must be >= 1, got 0"):
    check_config(smoke_config)


def test_unknown_probe_features_name_the_encoder_stages(smoke_config, digits):
  smoke_config.probe.features = "block9"
  with pytest.raises(UserError, match=r"probe.features 'block9' unknown for encoder 'cnn'; use "
                                      r"'pooled', 'last_stage' or one of its stages: block0, "):
    loop.build_experiment(smoke_config, digits)


def test_batch_not_divisible_by_devices(smoke_config, digits):
  smoke_config.batch_size = 33
  with pytest.raises(UserError, match=r"batch_size 33 is not divisible by the 2 devices; use a "
                                      r"multiple of 2, or --config.devices=N"):
    loop.build_experiment(smoke_config, digits)


def test_image_too_small_for_the_encoder(smoke_config, digits):
  smoke_config.encoder = "lenet5"
  with pytest.raises(UserError, match=r"image 8x8 is too small for encoder 'lenet5' \(it needs at "
                                      r"least \d+x\d+: .*use an encoder that pads, e.g. "
                                      r"--config.encoder=cnn"):
    loop.build_experiment(smoke_config, digits)


def test_corrupt_npz_names_the_file(tmp_path):
  path = tmp_path / "data.npz"
  path.write_bytes(b"PK\x03\x04 not really a zip file")
  with pytest.raises(UserError, match=rf"{path} is not a readable .npz file"):
    load_dataset(f"npz:{path}")


def test_second_run_on_a_workdir_is_refused_with_the_pid(tmp_path):
  with claim_workdir(tmp_path):
    with pytest.raises(UserError, match=rf"{tmp_path} is in use by another run \(pid "
                                        rf"{os.getpid()}\); wait for it to finish"):
      with claim_workdir(tmp_path):
        pass
  with claim_workdir(tmp_path):  # released when the first run ends
    pass


def test_workdir_that_is_not_writable(tmp_path):
  workdir, error = _unwritable_workdir_error(tmp_path)
  # EACCES from permissions, EROFS from a read-only mount: both are "not writable".
  assert re.fullmatch(rf"workdir {re.escape(str(workdir))} is not writable \((Permission denied|"
                      r"Read-only file system)\); fix its permissions or choose another --workdir",
                      error), error


# claim_workdir(argv[1]) in a root process that first gives up the capabilities that let root
# ignore file permissions (capset(2) on its own thread: no other process is affected). Prints the
# one-line error, or "claimed".
_CLAIM_WITHOUT_DAC_OVERRIDE = """
import ctypes, sys

class Header(ctypes.Structure):
  _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

class Sets(ctypes.Structure):
  _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
              ("inheritable", ctypes.c_uint32)]

libc = ctypes.CDLL(None, use_errno=True)
header, sets = Header(0x20080522, 0), (Sets * 2)()  # version 3: capabilities 0-63 in two words
DAC = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
if libc.capget(ctypes.byref(header), sets) != 0:
  sys.exit(f"capget: errno {ctypes.get_errno()}")
sets[0].effective &= ~DAC & 0xFFFFFFFF
sets[0].permitted &= ~DAC & 0xFFFFFFFF
if libc.capset(ctypes.byref(header), sets) != 0:
  sys.exit(f"capset: errno {ctypes.get_errno()}")

from ssljax.errors import UserError
from ssljax.rundir import claim_workdir
try:
  with claim_workdir(sys.argv[1]):
    print("claimed")
except UserError as e:
  print(e)
"""


def _unwritable_workdir_error(tmp_path):
  """(directory, claim_workdir's error on it) for a directory the check cannot write to.

  chmod 555 stops an ordinary user. Root ignores permissions (CAP_DAC_OVERRIDE), so as root the
  same check runs in a child process that drops that capability first. Where even that fails
  (not Linux), sysfs, which refuses new files to root too (EACCES; EROFS where it is mounted
  read-only, as in many containers).
  """
  workdir = tmp_path / "ro"
  workdir.mkdir()
  workdir.chmod(0o555)
  if not _can_create_files(workdir):
    with pytest.raises(UserError) as error:
      with claim_workdir(workdir):
        pass
    return workdir, str(error.value)
  child = subprocess.run([sys.executable, "-c", _CLAIM_WITHOUT_DAC_OVERRIDE, str(workdir)],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
  if child.returncode == 0:
    return workdir, child.stdout.strip()
  workdir = pathlib.Path("/sys/kernel")
  if not workdir.is_dir() or _can_create_files(workdir):
    pytest.skip(f"no unwritable directory available ({child.stderr.strip()[-200:]})")
  with pytest.raises(UserError) as error:
    with claim_workdir(workdir):
      pass
  return workdir, str(error.value)


def _can_create_files(directory):
  try:
    tempfile.TemporaryFile(dir=directory).close()
    return True
  except OSError:
    return False


def test_workdir_that_cannot_be_created(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(UserError, match=r"cannot create workdir .*file/run: Not a directory"):
    pretrain_cli.run(load_config("fmnist_infonce", "smoke"), tmp_path / "file" / "run")


def test_resuming_with_an_incompatible_config_shows_the_keys(smoke_config, tmp_path):
  saved = resolved_config(smoke_config)
  (tmp_path / "config.json").write_text(json.dumps(saved))
  (tmp_path / "checkpoints" / "4").mkdir(parents=True)
  harmless = load_config("fmnist_infonce", "smoke")
  harmless.devices, harmless.log_every, harmless.probe.seeds = 2, 7, 5
  harmless.wandb.mode = "offline"
  check_resumable(tmp_path, resolved_config(harmless))  # no error
  changed = load_config("fmnist_infonce", "smoke")
  changed.batch_size, changed.optimizer.lr = 16, 1e-3
  with pytest.raises(UserError, match=rf"{tmp_path} holds checkpoints of a run with a different "
                                      r"config \(batch_size: 32 -> 16; optimizer.lr: 0.002 -> "
                                      r"0.001\); resuming would mix two runs"):
    pretrain_cli.run(changed, tmp_path)  # refused before any data is loaded


def test_resuming_a_run_older_than_a_config_key(smoke_config, tmp_path):
  """A run saved before an option existed resumes while the option keeps its default."""
  saved = resolved_config(smoke_config)
  del saved["micro_batch_size"]
  (tmp_path / "config.json").write_text(json.dumps(saved))
  (tmp_path / "checkpoints" / "4").mkdir(parents=True)
  defaults = resolved_config(base_config())
  check_resumable(tmp_path, resolved_config(smoke_config), defaults)  # no error
  smoke_config.micro_batch_size = 16
  with pytest.raises(UserError, match=r"micro_batch_size: \(not set\) -> 16"):
    check_resumable(tmp_path, resolved_config(smoke_config), defaults)


def test_nonfinite_loss_stops_with_step_metric_and_hint(smoke_config, tmp_path):
  smoke_config.optimizer.lr = 1e30
  smoke_config.checkpoint_every = 1
  exp = loop.build_experiment(smoke_config)
  with pytest.raises(UserError, match=r"non-finite main/total_loss and main/grad_norm \(NaN or Inf\) at step \d+; "
                                      r"stopped, the last good checkpoint is step \d+ in .*"
                                      r"lower --config.optimizer.lr \(now 1e\+30\), or raise "
                                      r"--config.objectives.infonce.temperature \(now 0.5\)"):
    loop.pretrain(exp, tmp_path, MetricsWriter(tmp_path, {}, smoke_config.wandb))
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir())
  assert steps and max(steps) < smoke_config.steps  # nothing written after the bad step


def test_nonfinite_steps_are_skipped_and_counted_when_configured(smoke_config, tmp_path):
  smoke_config.optimizer.lr = 1e30
  smoke_config.nonfinite = "skip"
  exp = loop.build_experiment(smoke_config)
  state, summary = loop.pretrain(exp, tmp_path, MetricsWriter(tmp_path, {}, smoke_config.wandb))
  assert int(state.step) == smoke_config.steps and 0 < summary["nonfinite_skipped"] < 8
  assert all(np.isfinite(p).all() for p in jax.tree.leaves(jax.device_get(state.params)))


def test_wandb_online_without_key_falls_back_to_offline(tmp_path, monkeypatch, capsys):
  monkeypatch.delenv("WANDB_API_KEY", raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc either
  writer = MetricsWriter(tmp_path, {"seed": 0}, {"mode": "online", "project": "t"})
  writer.write(1, {"loss": 1.0})
  writer.close()
  assert writer.wandb_mode == "offline"
  assert ("warning: W&B online logging is not possible (no API key: set WANDB_API_KEY or run "
          "`wandb login`); logging offline to") in capsys.readouterr().err
  assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_wandb_unreachable_falls_back_to_offline_quickly(tmp_path, monkeypatch, capsys):
  # Behind a proxy the reachability check (rightly) defers to wandb, which would then wait out its
  # own timeouts: the test is about the direct connection, so no proxy.
  for name in list(os.environ):
    if name.lower().endswith("_proxy"):  # HTTP(S)_PROXY, ALL_PROXY, NO_PROXY, either case
      monkeypatch.delenv(name)
  monkeypatch.setenv("WANDB_API_KEY", "fake-key-" + "0" * 31)
  monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing listens
  writer = MetricsWriter(tmp_path, {"seed": 0}, {"mode": "online", "project": "t"})
  writer.close()
  assert writer.wandb_mode == "offline"
  assert ("W&B online logging is not possible (http://127.0.0.1:9 is unreachable: Connection "
          "refused)") in capsys.readouterr().err


def test_secrets_stay_out_of_the_run_directory(smoke_config, tmp_path, monkeypatch, capfd):
  secret = "fake-secret-3f9a0c7d1e5b4a2f8c6d0e1f2a3b4c5d6e7f8a9b"
  monkeypatch.setenv("WANDB_API_KEY", secret)
  monkeypatch.setenv("SSLJAX_TEST_TOKEN", secret + "-env")
  smoke_config.wandb.mode = "offline"
  smoke_config.dataset = "digits"  # the smallest real dataset: evaluation takes seconds
  smoke_config.steps = 4
  smoke_config.probe.seeds, smoke_config.probe.raw_pixel_baseline = 1, False
  smoke_config.probe.random_init, smoke_config.probe.extra_features = False, ()
  pretrain_cli.run(smoke_config, tmp_path)
  out, err = capfd.readouterr()
  assert secret not in out + err
  leaks = [str(p) for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
  assert not leaks
  assert list((tmp_path / "wandb").glob("offline-run-*"))  # W&B did write its run


def test_cli_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
  args = ["--config=experiments/fmnist_infonce.py:smoke", f"--workdir={tmp_path}",
          "--config.batchsize=3"]
  result = _cli(*args)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines() == [
      "error: --config.batchsize: the config has no key 'batchsize'; did you mean 'batch_size'?"]
  result = _cli(*args[:2], "--config.views.scale=0.5", "--debug")
  assert result.returncode != 0 and "Traceback" in result.stderr
  assert "views.scale must be a pair (low, high) in (0, 1], got (0.5,)" in result.stderr


def test_a_key_error_inside_training_is_a_traceback_not_an_unknown_config_key(tmp_path):
  # Only flag parsing turns KeyError/AttributeError into "unknown config key": here the key named
  # by the error is even given on the command line, and the message would be a lie.
  script = ("import sys; import ssljax.train.loop as loop\n"
            "def broken(*args, **kwargs): raise KeyError('batch_size')\n"
            "loop.pretrain = broken\n"
            "from ssljax.pretrain import entry_point\n"
            "sys.argv = ['ssljax.pretrain', *sys.argv[1:]]; entry_point()\n")
  result = subprocess.run(
      [sys.executable, "-c", script, "--config=experiments/fmnist_infonce.py:smoke",
       f"--workdir={tmp_path}", "--config.dataset=digits", "--config.batch_size=16",
       "--config.cpu_devices=2"],
      cwd=ROOT, text=True, capture_output=True, timeout=300,
      env={**os.environ, "SSLJAX_MALLOC_TUNING": "0"})
  assert result.returncode not in (0, 2)
  assert "Traceback" in result.stderr and "KeyError: 'batch_size'" in result.stderr
  assert "has no key" not in result.stderr and "broken" in result.stderr


# An entry point whose failure leaves a started, unfinished coroutine that raises when it is closed,
# as a failed Orbax restore leaves its TensorStore reads; it sits in a reference cycle, so only the
# garbage collector (or exit) frees it, after the error line is printed.
_FAILS_WITH_AN_ABANDONED_READ = """
import sys
from ssljax.errors import UserError, run_app

class Pause:
  def __await__(self):
    yield

async def read_array():
  try:
    await Pause()
  except GeneratorExit:
    raise Exception("Encountered error while reading array index: " + "spec " * 200)

def main(argv):
  read = read_array()
  read.send(None)
  cycle = {"read": read}
  cycle["self"] = cycle
  raise UserError("the checkpoint does not restore")

run_app(main)
"""


def test_a_user_error_is_one_line_even_when_reads_are_left_unfinished(tmp_path):
  child = subprocess.run([sys.executable, "-c", _FAILS_WITH_AN_ABANDONED_READ],
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
  assert child.returncode == 2
  assert child.stderr.splitlines() == ["error: the checkpoint does not restore"], child.stderr
