"""experiments/benchmarks/accelerator_check.sh runs on the CPU, shrunk, and every section passes, so
the script is known to work before a GPU sees it; its size choice and section runner report their
own failures.

The end-to-end run is one subprocess doing what a GPU user runs, in its small size (batch 8, 2
timed steps, ResNet-18 at width 16, CLI runs of 60 steps): mostly compilation, 3 minutes on the
2-core development machine while another job kept it busy.
"""
import math
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "experiments" / "benchmarks"))
import accelerator_check  # noqa: E402
import resume_check  # noqa: E402

SCRIPT = ROOT / "experiments" / "benchmarks" / "accelerator_check.sh"
LAST_LINE = re.compile(r"accelerator_check ok=(True|False) resnet18_views_per_s=([\d.]+|nan) "
                       r"mfu=([\d.]+|nan)")


def test_the_check_passes_on_the_cpu_and_ends_with_its_summary_line(tmp_path):
  env = {**os.environ, "PYTHON": sys.executable, "JAX_PLATFORMS": "cpu", "TMPDIR": str(tmp_path)}
  env.pop(accelerator_check.SIZE_VAR, None)
  out = subprocess.run([str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=600)  # from anywhere: the script finds the checkout itself
  lines = out.stdout.strip().splitlines()
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  match = LAST_LINE.fullmatch(lines[-1])
  assert match, lines[-1]
  ok, views_per_s, mfu = match.groups()
  assert ok == "True" and float(views_per_s) > 0 and math.isnan(float(mfu))  # no CPU peak
  text = "\n".join(lines)
  assert "accelerator_check size=small" in text and "backend=cpu" in text
  assert "resnet18 width=16 infonce bfloat16 batch=8: views_per_s=" in text
  assert "quickstart cnn widths=8,16 infonce float32 batch=16" in text  # auto = float32 on CPU
  assert re.search(r"device_equivalence 1_vs_2: max_relative_difference=\S+", text)
  assert re.search(r"pretrain \+ probe \(digits, 60 steps, 2 devices\).*linear_probe_top1=0\.\d+",
                   text)
  resumed = re.search(r"kill -9 resume: killed after the checkpoint of step (\d+), resumed from "
                      r"step (\d+) of 60, params bit-identical to the uninterrupted run: True", text)
  assert resumed and 0 < int(resumed.group(2)) < 60, text[-2000:]
  assert "--xla_gpu_deterministic_ops=true" in text and "FAILED" not in text
  assert not any(tmp_path.glob("accelerator-check-*"))  # its run directories are cleaned up


def test_size_follows_the_backend_and_rejects_an_unknown_one():
  assert accelerator_check.chosen_size("cpu", {}) == "small"
  assert accelerator_check.chosen_size("gpu", {}) == accelerator_check.chosen_size("tpu", {}) == "full"
  assert accelerator_check.chosen_size("cpu", {"SSLJAX_CHECK_SIZE": "full"}) == "full"
  with pytest.raises(SystemExit, match="SSLJAX_CHECK_SIZE='huge' must be one of full, small"):
    accelerator_check.chosen_size("gpu", {"SSLJAX_CHECK_SIZE": "huge"})


def test_a_failing_section_is_reported_and_the_rest_go_on(capsys):
  failures = []
  def broken():
    raise RuntimeError("out of memory")
  assert accelerator_check.run_section("resnet18", broken, failures) is None
  assert failures == ["resnet18: RuntimeError: out of memory"]
  assert "RuntimeError: out of memory" in capsys.readouterr().err  # with its traceback


def test_resume_runs_get_deterministic_gpu_ops_and_share_the_gpu(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
  # The suite's own cache (tests/conftest.py) is not the check's: without one, none is set.
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  env = resume_check.run_environment()
  assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_gpu_deterministic_ops=true"
  assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
  assert "JAX_COMPILATION_CACHE_DIR" not in env
  monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_deterministic_ops=false")  # the user's own choice
  assert resume_check.run_environment()["XLA_FLAGS"] == "--xla_gpu_deterministic_ops=false"
  shared = resume_check.run_environment(ROOT / "cache")  # the three runs compile once
  assert shared["JAX_COMPILATION_CACHE_DIR"] == str(ROOT / "cache")
  assert shared["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
