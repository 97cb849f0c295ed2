"""The accelerator check's CLI part: a short pretrain + linear probe, and a kill -9 then resume.

Three runs of one command (``python -m ssljax.pretrain``, the smoke config on scikit-learn's digits,
which every machine has): the *reference* runs uninterrupted and its report is the pretrain + probe
smoke; the *victim* is killed with SIGKILL as soon as its first checkpoint is complete; the same
command on the victim's directory then resumes it. Its final parameters must be bit-identical to the
reference's (``params_fingerprint``), as ``tests/test_resume.py`` proves on the CPU. On a GPU that
holds only with XLA's deterministic ops (``--xla_gpu_deterministic_ops=true``, in every run's
XLA_FLAGS): otherwise reductions (scatter-adds, some convolution algorithms) may sum in a different
order on every run. All three run on the same devices and share one persistent compilation cache:
the victim starts once the reference has compiled its step (and written a checkpoint), and the
rerun once the reference is done, so each program is compiled once (on 2 CPU cores, compilation is
most of a smoke run's time; a cached executable computes exactly what a fresh one does).
"""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
DETERMINISTIC = "--xla_gpu_deterministic_ops=true"
MIN_PROBE_TOP1 = 0.5  # digits has 10 classes: chance is 0.1, a working probe scores far above it


def command_args(steps: int, every: int, cpu_devices: int) -> list[str]:
  """The runs' flags: the smoke config, long enough that a kill lands mid-run."""
  args = ["--config=experiments/fmnist_infonce.py:smoke", "--config.dataset=digits",
          "--config.probe.raw_pixel_baseline=False", "--config.probe.seeds=1",
          "--config.probe.random_init=False", "--config.probe.extra_features=()",
          f"--config.steps={steps}",
          f"--config.checkpoint_every={every}", f"--config.log_every={every}"]
  return args + ([f"--config.cpu_devices={cpu_devices}"] if cpu_devices else [])


def run_environment(cache_dir: pathlib.Path | None = None) -> dict:
  env = dict(os.environ)
  if cache_dir is not None and not env.get("JAX_COMPILATION_CACHE_DIR"):
    env.update(JAX_COMPILATION_CACHE_DIR=str(cache_dir),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")  # default 1 s: most would miss
  flags = env.get("XLA_FLAGS", "")
  if "xla_gpu_deterministic_ops" not in flags:
    env["XLA_FLAGS"] = f"{flags} {DETERMINISTIC}".strip()
  env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # three processes may share one GPU
  env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
  return env


def checkpoint_steps(workdir: pathlib.Path) -> list[int]:
  """Steps of the complete checkpoints (Orbax writes to a temporary name and renames)."""
  directory = workdir / "checkpoints"
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) \
      if directory.is_dir() else []


class ResumeCheck:
  """``start()`` launches the reference and the victim (and a thread that kills the victim);
  ``finish(failures)`` resumes the victim, waits for all and prints what it found."""

  def __init__(self, workdir: pathlib.Path, small: bool, cpu_devices: int = 0):
    self.workdir = pathlib.Path(workdir)
    # The kill lands between the first checkpoint and the last step: small (CPU), 60 steps at tens
    # per second leave seconds for it; full (GPU) steps are faster, so more of them.
    self.steps, every = (60, 10) if small else (600, 20)
    self.args = command_args(self.steps, every, cpu_devices)
    self.env = run_environment(self.workdir / "compilation-cache")
    self.processes: dict[str, subprocess.Popen] = {}
    self.killed_at: int | None = None
    self._watcher: threading.Thread | None = None

  def _command(self, name: str) -> list[str]:
    return [sys.executable, "-m", "ssljax.pretrain", *self.args, f"--workdir={self.workdir / name}"]

  def _start(self, name: str) -> subprocess.Popen:
    # Output to files: a pipe nobody reads fills up with progress bars and stalls the run.
    out = open(self.workdir / f"{name}.stdout", "w")
    err = open(self.workdir / f"{name}.stderr", "w")
    process = subprocess.Popen(self._command(name), cwd=ROOT, env=self.env, stdout=out, stderr=err,
                               stdin=subprocess.DEVNULL)
    self.processes[name] = process
    return process

  def output(self, name: str) -> tuple[str, str]:
    return tuple((self.workdir / f"{name}.{s}").read_text() for s in ("stdout", "stderr"))

  def start(self) -> None:
    """Starts the reference, and a thread that starts the victim and kills it."""
    self._start("reference")
    self._watcher = threading.Thread(target=self._victim, daemon=True)
    self._watcher.start()

  def _victim(self, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    reference = self.processes["reference"]
    while (reference.poll() is None and not checkpoint_steps(self.workdir / "reference")
           and time.monotonic() < deadline):
      time.sleep(0.05)  # its step is compiled (and cached) once it has saved a checkpoint
    victim = self._start("victim")
    while victim.poll() is None and time.monotonic() < deadline:
      steps = checkpoint_steps(self.workdir / "victim")
      if steps:
        victim.send_signal(signal.SIGKILL)
        self.killed_at = steps[-1]
        break
      time.sleep(0.02)
    victim.wait()

  def finish(self, failures: list) -> None:
    try:
      self._finish(failures)
    finally:
      for process in self.processes.values():
        if process.poll() is None:
          process.kill()
          process.wait()

  def _finish(self, failures: list) -> None:
    self._watcher.join(timeout=900)
    victim = self.processes["victim"]
    reference = self.processes["reference"]
    reference.wait(timeout=900)  # first: the rerun then finds every program in the cache
    if victim.returncode != -signal.SIGKILL:
      failures.append(f"kill -9: the run ended with exit code {victim.returncode} before its first "
                      f"checkpoint could be killed: {self.output('victim')[1][-500:]}")
      return
    resumed = subprocess.run(self._command("victim"), cwd=ROOT, env=self.env, text=True,
                             capture_output=True, stdin=subprocess.DEVNULL, timeout=900)
    exits = (("reference", reference.returncode, self.output("reference")[1]),
             ("resumed", resumed.returncode, resumed.stderr))
    for name, code, stderr in exits:
      if code != 0:
        failures.append(f"{name} run: exit code {code}: {stderr.strip()[-500:]}")
    if any(code != 0 for _, code, _ in exits):
      return
    ref = json.loads((self.workdir / "reference" / "report.json").read_text())
    res = json.loads((self.workdir / "victim" / "report.json").read_text())
    top1 = ref["linear_probe"]["top1"]
    print(f"pretrain + probe (digits, {ref['pretrain']['steps']} steps, "
          f"{ref['pretrain']['devices']} devices): wall_s={ref['pretrain']['wall_s']:.1f} "
          f"linear_probe_top1={top1:.4f} (chance 0.1)")
    if not top1 > MIN_PROBE_TOP1:
      failures.append(f"the smoke run's linear probe scored {top1:.4f} <= {MIN_PROBE_TOP1}")
    start = res["pretrain"].get("resumed_from_step")
    same = res["pretrain"]["params_fingerprint"] == ref["pretrain"]["params_fingerprint"]
    print(f"kill -9 resume: killed after the checkpoint of step {self.killed_at}, resumed from "
          f"step {start} of {self.steps}, params bit-identical to the uninterrupted run: {same} "
          f"(XLA_FLAGS={self.env['XLA_FLAGS']})")
    if "Resuming from the checkpoint at step" not in resumed.stdout or not start:
      failures.append("the rerun after kill -9 did not resume from a checkpoint")
    elif start >= self.steps:
      failures.append(f"the kill landed after the last step ({start} of {self.steps}): nothing "
                      "was resumed mid-run")
    if not same:
      failures.append("the resumed run's parameters differ from the uninterrupted run's")
