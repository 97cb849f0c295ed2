"""Multi-host: two processes on localhost (one CPU device each, gloo collectives) train and evaluate
the smoke config as one run, and agree with one process on two devices: bit-identical final
parameters (``pretrain.params_fingerprint``), the same losses and probe accuracy. Only process 0
writes metrics and the report; both write the Orbax checkpoints into the shared run directory.

The reference is the same command without ``--multihost`` and with ``--config.cpu_devices=2``, in
its own process too: bit-identity needs the same XLA CPU client, and this test process (8 fake
devices, see conftest) runs a 2-device step with bitwise different rounding.

The processes join through ``python -m ssljax.pretrain --multihost`` with JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID (``pretrain.init_distributed``), the way a launcher without
a scheduler starts them; the coordinator binds to 127.0.0.1 only. Every wait has a timeout, and
the children are killed if the test gives up on them.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT

TIMEOUT_S = 600  # all three runs, on a loaded 2-core machine
OVERRIDES = {"steps": 4, "batch_size": 16, "checkpoint_every": 2, "probe.seeds": 1,
             "probe.raw_pixel_baseline": False, "probe.train_subset": 1024}


def free_port() -> int:
  try:
    import portpicker
    return portpicker.pick_unused_port()
  except ImportError:
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      return s.getsockname()[1]


def start_process(workdir, log, rank=None, port=None):
  """``python -m ssljax.pretrain`` on the smoke config: process ``rank`` of two (one device each)
  joining the coordinator on ``port``, or with ``rank=None`` a lone process with two devices."""
  env = {k: v for k, v in os.environ.items() if "_proxy" not in k.lower()}  # proxies can hang gRPC
  env["PYTHONPATH"] = str(ROOT)
  flags = [f"--config.{k}={v}" for k, v in OVERRIDES.items()]
  if rank is None:
    flags.append("--config.cpu_devices=2")
  else:
    env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
               JAX_COORDINATOR_BIND_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(rank))
    flags += ["--multihost", "--config.cpu_devices=1"]
  return subprocess.Popen(
      [sys.executable, "-m", "ssljax.pretrain", "--config=experiments/fmnist_infonce.py:smoke",
       f"--workdir={workdir}", *flags],
      cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process):
  if process.poll() is None:
    os.killpg(process.pid, signal.SIGKILL)  # its own session: only this child and its children
    process.wait(timeout=30)


def test_two_processes_train_like_one(tmp_path):
  multi, single = tmp_path / "multi", tmp_path / "single"
  port = free_port()
  names = ["process0", "process1", "single"]
  logs = [open(tmp_path / f"{name}.log", "w") for name in names]
  processes = [start_process(multi, logs[0], 0, port), start_process(multi, logs[1], 1, port),
               start_process(single, logs[2])]
  deadline = time.monotonic() + TIMEOUT_S
  try:
    for process in processes:
      process.wait(timeout=max(deadline - time.monotonic(), 1))
  except subprocess.TimeoutExpired:
    pytest.fail(f"the runs did not finish within {TIMEOUT_S} s")
  finally:
    for process in processes:
      stop(process)
    for log in logs:
      log.close()
  for name, process in zip(names, processes):
    output = (tmp_path / f"{name}.log").read_text()
    assert process.returncode == 0, f"{name}:\n{output[-3000:]}"

  single = json.loads((single / "report.json").read_text())
  report = json.loads((multi / "report.json").read_text())
  assert report["pretrain"]["devices"] == 2 and report["pretrain"]["steps"] == 4
  assert report["pretrain"]["params_fingerprint"] == single["pretrain"]["params_fingerprint"]
  assert report["pretrain"]["final_loss"] == single["pretrain"]["final_loss"]
  assert report["linear_probe"]["top1"] == single["linear_probe"]["top1"]
  # Process 0 alone logged: one line per logged step, no duplicates from process 1.
  steps = [json.loads(line)["step"] for line in (multi / "metrics.jsonl").read_text().splitlines()]
  assert steps == [2, 4]
  assert sorted(p.name for p in (multi / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "4"]
  # The summary lines are process 0's: process 1 does not repeat them.
  assert "linear probe top-1" in (tmp_path / "process0.log").read_text()
  assert "linear probe top-1" not in (tmp_path / "process1.log").read_text()
