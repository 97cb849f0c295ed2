"""The malloc settings are added once, never override a user's own, and can be switched off; a CLI
re-executed with them produces the same command line."""
import os
import subprocess
import sys

import pytest

from ssljax import host_memory

glibc_only = pytest.mark.skipif(host_memory.tuned_environment({}) is None,
                                reason="malloc settings apply to glibc Linux only")


@glibc_only
def test_settings_added_once_and_respect_the_user():
  env = host_memory.tuned_environment({"GLIBC_TUNABLES": "glibc.rtld.nns=2"})
  assert env["GLIBC_TUNABLES"] == f"glibc.rtld.nns=2:{host_memory.TUNABLES}"
  assert host_memory.tuned_environment(env) is None  # already applied: no second re-exec
  assert host_memory.tuned_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=1"}) is None
  assert host_memory.tuned_environment({"SSLJAX_MALLOC_TUNING": "0"}) is None


@glibc_only
def test_reexec_keeps_the_command_line_and_sets_the_settings():
  code = ("import os, sys; from ssljax.host_memory import reexec_with_tuned_malloc; "
          "reexec_with_tuned_malloc(); print(os.environ['GLIBC_TUNABLES'], sys.argv[1:])")
  env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "SSLJAX_MALLOC_TUNING")}
  out = subprocess.run([sys.executable, "-c", code, "a", "--b=1"], env=env, capture_output=True,
                       text=True, check=True).stdout
  assert out.strip() == f"{host_memory.TUNABLES} ['a', '--b=1']"


@glibc_only
def test_settings_apply_on_the_cpu_backend_only():
  assert host_memory.tuned_environment({"JAX_PLATFORMS": "cpu"}) is not None
  for env in ({"JAX_PLATFORMS": "cuda"}, {"JAX_PLATFORMS": "tpu,cpu"},
              {"SSLJAX_ACCELERATOR": "cuda"}, {"SSLJAX_ACCELERATOR": "tpu"}):
    assert host_memory.tuned_environment(env) is None, env
  assert host_memory.tuned_environment({}, backend="gpu") is None


@glibc_only
def test_no_reexec_when_jax_will_run_on_a_gpu():
  code = ("import os; from ssljax.host_memory import reexec_with_tuned_malloc; "
          "reexec_with_tuned_malloc(); print(os.environ.get('GLIBC_TUNABLES'))")
  env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "SSLJAX_MALLOC_TUNING")}
  out = subprocess.run([sys.executable, "-c", code], env={**env, "JAX_PLATFORMS": "cuda"},
                       capture_output=True, text=True, check=True).stdout
  assert out.strip() == "None"


@glibc_only
def test_memory_freed_under_the_settings_is_returned_where_a_phase_ends():
  """Under the settings a freed block stays resident (that is their point during training);
  return_free_memory gives it back, as the evaluation does after pretraining."""
  code = """
import numpy as np
from ssljax.host_memory import return_free_memory
rss = lambda: int(open('/proc/self/statm').read().split()[1]) * 4096 / 2 ** 20
x = np.ones(400 * 2 ** 20 // 8)  # 400 MiB, written so every page is resident
before_free = rss()
del x
after_free = rss()
return_free_memory()
print(before_free, after_free, rss())
"""
  env = {**os.environ, "GLIBC_TUNABLES": host_memory.TUNABLES}
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       check=True).stdout
  before_free, after_free, after_return = map(float, out.split())
  assert after_free > before_free - 50  # kept by malloc under the settings
  assert after_return < after_free - 300  # handed back
