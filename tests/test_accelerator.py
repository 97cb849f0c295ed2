"""Accelerators without one (issue 16): launch/setup.sh picks the extra from a fake ``nvidia-smi``, a
fake TPU on the PCI bus or SSLJAX_ACCELERATOR, and rejects a wrong value in one line; the warning
when a GPU is visible but jax runs on the CPU; the pre-import backend rule behind the malloc
re-exec; the CPU kernels and the bfloat16 default switched by a faked backend name.
"""
import io
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from conftest import ROOT, load_config
from ssljax import accelerator
from ssljax.config_checks import check_config
from ssljax.errors import UserError
from ssljax.models import cpu_kernels, layers
from ssljax.rundir import resolved_config
from ssljax.train import loop
from test_device_equivalence import synthetic_dataset, tiny_config

NVIDIA_SMI = "#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0000)'\n"
# What nvidia-smi prints on a machine whose driver is missing or broken.
BROKEN_NVIDIA_SMI = ("#!/bin/sh\necho 'NVIDIA-SMI has failed because it couldn't communicate with "
                     "the NVIDIA driver.'\nexit 9\n")


@pytest.fixture
def fake_gpu(tmp_path, monkeypatch):
  """A ``nvidia-smi`` listing an H100 first on PATH; returns the environment of that PATH."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "nvidia-smi").write_text(NVIDIA_SMI)
  (bin_dir / "nvidia-smi").chmod(0o755)
  for name in ("SSLJAX_ACCELERATOR", "JAX_PLATFORMS"):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
  return bin_dir


def setup_dry_run(tmp_path, env_extra, extras="test"):
  """``ensure_venv`` of launch/setup.sh in dry-run mode: (exit code, stdout, stderr)."""
  env = {k: v for k, v in os.environ.items() if k not in ("SSLJAX_ACCELERATOR", "JAX_PLATFORMS")}
  env.update(SSLJAX_DRY_RUN="1", SSLJAX_EXTRAS=extras, SSLJAX_VENV=str(tmp_path / "venv"),
             PYTHON=sys.executable, **env_extra)
  script = f"source {ROOT / 'launch' / 'setup.sh'} && ensure_venv && echo JAX_PLATFORMS=${{JAX_PLATFORMS:-}}"
  out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
  return out.returncode, out.stdout, out.stderr


def test_setup_installs_the_cuda_extra_when_nvidia_smi_sees_a_gpu(tmp_path, fake_gpu):
  code, out, err = setup_dry_run(tmp_path, {"PATH": os.environ["PATH"]})
  assert code == 0, err
  assert "[setup] accelerator=cuda would install: ssljax[test,cuda]" in out
  assert not (tmp_path / "venv").exists()  # a dry run installs nothing


def test_setup_installs_no_extra_without_a_working_gpu(tmp_path, fake_gpu):
  (fake_gpu / "nvidia-smi").write_text(BROKEN_NVIDIA_SMI)
  code, out, err = setup_dry_run(tmp_path, {"PATH": os.environ["PATH"]}, extras="")
  assert code == 0, err
  assert "[setup] accelerator=cpu would install: ssljax into" in out


def test_setup_honours_a_forced_accelerator_and_rejects_a_wrong_one(tmp_path, fake_gpu):
  path = {"PATH": os.environ["PATH"]}
  code, out, _ = setup_dry_run(tmp_path, {**path, "SSLJAX_ACCELERATOR": "tpu"})
  assert code == 0 and "accelerator=tpu would install: ssljax[test,tpu]" in out
  # cpu on a GPU machine: no plugin, and JAX_PLATFORMS=cpu so that one installed earlier stays idle.
  code, out, _ = setup_dry_run(tmp_path, {**path, "SSLJAX_ACCELERATOR": "cpu"})
  assert code == 0 and "accelerator=cpu would install: ssljax[test]" in out
  assert "JAX_PLATFORMS=cpu" in out
  code, out, err = setup_dry_run(tmp_path, {**path, "SSLJAX_ACCELERATOR": "gpu"})
  assert code != 0 and "would install" not in out
  assert err.strip() == ("error: SSLJAX_ACCELERATOR='gpu' is not one of cpu, cuda, tpu; unset it "
                         "to detect the machine's accelerator")


def test_the_detection_needs_nothing_but_the_standard_library():
  code = ("import sys, ssljax.accelerator as a; a.visible(); a.expected_backend(); "
          "print(sorted({m.split('.')[0] for m in sys.modules} & {'jax', 'numpy', 'absl'}))")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout
  assert out.strip() == "[]"  # launch/setup.sh runs it before anything is installed


@pytest.mark.parametrize("device, expected", [("0x0063", True), ("0x006f", True),
                                              ("0x0042", False)])  # 0x0042: Google's virtual NIC
def test_tpu_detection_reads_the_pci_bus_like_jax(tmp_path, device, expected):
  pci = tmp_path / "sys" / "bus" / "pci" / "devices" / "0000:00:05.0"
  pci.mkdir(parents=True)
  (pci / "vendor").write_text("0x1ae0\n")
  (pci / "device").write_text(f"{device}\n")
  assert accelerator.tpu_visible(str(tmp_path)) is expected


def test_tpu_detection_sees_accel_device_nodes(tmp_path):
  assert not accelerator.tpu_visible(str(tmp_path))
  (tmp_path / "dev").mkdir()
  (tmp_path / "dev" / "accel0").touch()
  assert accelerator.tpu_visible(str(tmp_path))


def test_expected_backend_rule(monkeypatch):
  rule = accelerator.expected_backend
  assert rule({"JAX_PLATFORMS": "cpu"}) == "cpu"
  assert rule({"JAX_PLATFORMS": "cuda,cpu"}) == "gpu"  # JAX tries them in order
  assert rule({"JAX_PLATFORMS": "tpu", "SSLJAX_ACCELERATOR": "cpu"}) == "tpu"  # JAX's own wins
  assert rule({"SSLJAX_ACCELERATOR": "cuda"}) == "gpu"
  assert rule({"SSLJAX_ACCELERATOR": "nonsense"}) == "cpu"  # a guess never fails
  assert rule({}) == "cpu"  # this machine: no plugin, no device
  monkeypatch.setattr(accelerator, "plugin_installed", lambda a: a == "cuda")
  assert rule({}) == "cpu"  # a plugin without its device: JAX falls back to the CPU
  monkeypatch.setattr(accelerator, "_device_nodes", lambda a, root="/": a == "cuda")
  assert rule({}) == "gpu"


def test_warning_when_a_gpu_is_visible_but_jax_runs_on_the_cpu(fake_gpu, monkeypatch):
  stream = io.StringIO()
  message = accelerator.warn_if_accelerator_unused(stream)
  assert stream.getvalue() == message + "\n" and "\n" not in message  # one line
  assert message.startswith("warning: an NVIDIA GPU is visible (nvidia-smi) but jax runs on the "
                            "CPU: the installed jax is the CPU-only build;")
  assert "pip install -e '.[cuda]'" in message
  monkeypatch.setattr(accelerator, "plugin_installed", lambda a: True)
  assert "plugin is installed but failed to start" in accelerator.backend_warning("cpu")
  assert accelerator.backend_warning("gpu") is None  # jax uses it: nothing to say
  assert accelerator.backend_warning("cpu", {"JAX_PLATFORMS": "cpu"}) is None  # on purpose
  assert accelerator.backend_warning("cpu", {"SSLJAX_ACCELERATOR": "cpu"}) is None
  assert "TPU is visible" in accelerator.backend_warning("cpu", {}, seen="tpu")


def test_no_warning_without_an_accelerator(monkeypatch):
  monkeypatch.setattr(accelerator, "nvidia_gpu_visible", lambda: False)
  monkeypatch.setattr(accelerator, "tpu_visible", lambda root="/": False)
  assert accelerator.backend_warning("cpu", {}) is None


def test_the_cli_prints_the_warning_and_a_wrong_accelerator_in_one_line(tmp_path, fake_gpu):
  env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
  cli = [sys.executable, "-m", "ssljax.pretrain", "--config=experiments/fmnist_infonce.py:smoke",
         "--config.batch_size=0", f"--workdir={tmp_path / 'run'}"]  # fails right after the warning
  out = subprocess.run(cli, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 2 and any(line.startswith("warning: an NVIDIA GPU is visible") for line in lines)
  out = subprocess.run(cli, cwd=ROOT, env={**env, "SSLJAX_ACCELERATOR": "gpu"}, capture_output=True,
                       text=True, timeout=300)
  assert "warning: SSLJAX_ACCELERATOR='gpu' is not one of cpu, cuda, tpu" in out.stderr


def test_cpu_kernels_are_for_the_cpu_backend_only(monkeypatch):
  monkeypatch.delenv(cpu_kernels.ENV_VAR, raising=False)
  x, w = jnp.ones((1, 8, 8, 4)), jnp.ones((3, 3, 4, 8))
  traced = lambda: str(jax.make_jaxpr(lambda x, w: layers.max_pool(
      layers.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=cpu_kernels.NHWC),
      (2, 2), (2, 2)))(x, w))
  assert "custom_jvp_call" in traced()  # the CPU backend: our kernels
  for backend in ("gpu", "tpu"):
    monkeypatch.setattr(jax, "default_backend", lambda backend=backend: backend)
    assert not cpu_kernels.cpu_kernels_enabled()
    jaxpr = traced()  # stock XLA: one convolution and one reduce_window, no custom rules
    assert "custom_jvp_call" not in jaxpr and "conv_general_dilated" in jaxpr
    assert "reduce_window" in jaxpr or "reduce_max" in jaxpr


def test_dtype_auto_is_bfloat16_on_accelerators_and_float32_on_the_cpu(monkeypatch):
  assert load_config("fmnist_infonce").dtype == "auto"  # the default every experiment inherits
  assert accelerator.compute_dtype("auto", "cpu") == "float32"
  assert accelerator.compute_dtype("auto", "gpu") == accelerator.compute_dtype("auto", "tpu") \
      == "bfloat16"
  assert accelerator.compute_dtype("float32", "gpu") == "float32"  # an explicit dtype overrides
  dataset = synthetic_dataset()
  config = tiny_config("infonce")
  config.dtype = "auto"

  def encoder_dtypes():
    exp = loop.build_experiment(config, dataset)
    state = jax.eval_shape(lambda: loop.initial_state(exp))
    images = jax.ShapeDtypeStruct((2, *dataset.image_shape), jnp.float32)
    (_, stages), _ = jax.eval_shape(lambda p, s, x: exp.objective.apply(
        "encoder", p, s, x, train=True), state.params, state.batch_stats, images)
    params = {str(leaf.dtype) for leaf in jax.tree.leaves(state.params)}
    return {str(a.dtype) for a in stages.values()}, params

  assert encoder_dtypes() == ({"float32"}, {"float32"})
  assert resolved_config(config)["dtype"] == "float32"  # config.json shows what ran
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert encoder_dtypes() == ({"bfloat16"}, {"float32"})  # bf16 compute, float32 parameters
  assert resolved_config(config)["dtype"] == "bfloat16"
  config.dtype = "float32"
  assert encoder_dtypes()[0] == {"float32"} and resolved_config(config)["dtype"] == "float32"


def test_a_wrong_dtype_names_the_choices():
  config = load_config("fmnist_infonce", "smoke")
  config.dtype = "float16"
  with pytest.raises(UserError, match="dtype.*auto.*float32.*bfloat16"):
    check_config(config)
