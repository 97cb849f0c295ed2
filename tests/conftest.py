"""Test setup: 8 fake CPU devices (device-count equivalence needs several), configs by file name."""
import importlib.util
import pathlib

import jax

# Must run before anything touches the backend.
jax.config.update("jax_num_cpu_devices", 8)

import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str, arg: str | None = None):
  """``get_config(arg)`` of ``experiments/<name>.py``, as ``--config=experiments/<name>.py:arg``."""
  spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def run_steps(config, dataset=None, steps=2):
  """Runs ``steps`` generic train steps of ``config``; returns (per-step metrics, final state), both
  on the host. The device-count equivalence tests compare these across ``config.devices``."""
  from ssljax.train import loop
  from ssljax.train.parallel import batch_sharding, replicated
  from ssljax.train.step import jit_train_step, make_train_step
  exp = loop.build_experiment(config, dataset)
  state = loop.initial_state(exp)
  step = jit_train_step(make_train_step(exp.objective.players(), exp.txs), replicated(exp.mesh),
                        batch_sharding(exp.mesh), replicated(exp.mesh))
  history = []
  for s in range(steps):
    state, metrics = step(state, exp.stream.batch(s))
    history.append(jax.device_get(metrics))
  return history, jax.device_get(state)


@pytest.fixture
def smoke_config():
  """The quickstart's smoke config on 2 devices."""
  config = load_config("fmnist_infonce", "smoke")
  config.devices = 2
  return config
