"""Test setup: 8 fake CPU devices (device-count equivalence needs several), configs by file name,
and a persistent compilation cache shared by every test process.

Most of the suite's time is XLA compiling the same smoke-sized train steps, probes and forward
passes again in each test and each CLI subprocess; JAX's on-disk cache (keyed by the program, the
compile options and the jax version, so a code change is a miss, never a stale hit) compiles each
once per machine. Measured: a smoke pretraining CLI took 238 s cold and 104 s warm on a busy 2-core
machine. Set JAX_COMPILATION_CACHE_DIR to move it; it lives in the repo's .cache/ (ignored by git).

On a fresh machine (CI) the cache is empty, and most of what is left is LLVM optimising programs
that then run a few smoke steps: ``JAX_DISABLE_MOST_OPTIMIZATIONS`` skips that work (as Flax's own
slow tests do). Measured on an idle 2-core machine, a cold smoke pretraining CLI on digits: 29 s
-> 20 s; 240 smoke steps ran at 1,038 images/s instead of 1,129. The arithmetic is the same
program's, so every comparison in the suite is between runs made under the same setting.

The suite runs on the CPU on a GPU/TPU machine too (``JAX_PLATFORMS=cpu`` unless set): its figures
and fake devices are the CPU's, and the CLI subprocesses it starts inherit the choice.
"""
import collections
import importlib.util
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Before jax is imported (it reads these once); subprocesses inherit them.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".cache" / "jax-compilation"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402

# Must run before anything touches the backend.
jax.config.update("jax_num_cpu_devices", 8)

import pytest  # noqa: E402


# The smallest ViT the tests build (2 blocks of width 32): real steps compile in seconds.
TINY_VIT = {"dim": 32, "depth": 2, "heads": 2}


def load_config(name: str, arg: str | None = None):
  """``get_config(arg)`` of ``experiments/<name>.py``, as ``--config=experiments/<name>.py:arg``."""
  spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def run_steps(config, dataset=None, steps=2, initial=None):
  """Runs ``steps`` generic train steps of ``config``; returns (per-step metrics, final state), both
  on the host (``loop.run_steps``). The device-count equivalence tests compare these across
  ``config.devices``. ``initial``: a host state to start from instead of initialising (one init
  compile per test instead of one per device count; the state does not depend on the mesh)."""
  from ssljax.train import loop
  return loop.run_steps(loop.build_experiment(config, dataset), steps, initial)


def initial_host_state(config, dataset=None):
  """``config``'s initial train state on the host, built op by op rather than jitted: the op-level
  compiles are shared by every test of the session, where each jitted init is a fresh compile of
  several seconds. Feed it to ``run_steps(..., initial=...)``."""
  import jax.numpy as jnp
  from ssljax.train import loop
  from ssljax.train.state import create_state
  exp = loop.build_experiment(config, dataset)
  sample = jnp.zeros((2, *exp.dataset.image_shape), jnp.float32)
  return jax.device_get(create_state(exp.objective, exp.txs, config.seed, sample, exp.probe))


@pytest.fixture
def smoke_config():
  """The quickstart's smoke config on 2 devices."""
  config = load_config("fmnist_infonce", "smoke")
  config.devices = 2
  return config


# The suite runs whole files per worker (launch/test.sh: --dist loadfile). These files hold a few
# long tests each (CLI pretrainings in subprocesses, a sweep, two processes, the accelerator check):
# started first, neither worker ends the suite alone on one of them while the other waits
# (longest-first list scheduling). The other files follow, most tests first, as xdist orders them
# by default; launch/test.sh turns that default off so this order holds.
RUN_FIRST = ("test_accelerator_check.py", "test_benchmark_suite.py", "test_sweeps.py",
             "test_multihost.py", "test_resume.py", "test_evaluate.py", "test_untrained_control.py",
             "test_gan.py", "test_pretrain.py")


def pytest_collection_modifyitems(items):
  per_file = collections.Counter(item.path.name for item in items)
  def rank(item):
    name = item.path.name
    return (RUN_FIRST.index(name) if name in RUN_FIRST else len(RUN_FIRST), -per_file[name], name)
  items.sort(key=rank)  # stable: each file keeps its own test order
