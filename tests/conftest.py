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


@pytest.fixture
def smoke_config():
  """The quickstart's smoke config on 2 devices."""
  config = load_config("fmnist_infonce", "smoke")
  config.devices = 2
  return config
