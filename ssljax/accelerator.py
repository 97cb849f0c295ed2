"""Which accelerator this machine has, which one JAX will use, and what follows from it: the extra
to install, the malloc re-execution, the default compute dtype, and the warning when the two differ.

Three questions, answered at different times:

* **visible**: what the hardware offers, read without JAX (``launch/setup.sh`` runs this module with
  the system Python before anything is installed): an NVIDIA GPU when ``nvidia-smi -L`` lists one, a
  TPU when the PCI bus holds a Google TPU chip (JAX's own test, ``jax._src.hardware_utils``: vendor
  0x1ae0 with a TPU device id) or ``/dev/accel*`` exists (TPU VMs' device nodes);
  ``SSLJAX_ACCELERATOR=cpu|cuda|tpu`` overrides it.
* **expected**: the backend JAX is about to pick, guessed *before* JAX is imported (the malloc
  settings of ``ssljax.host_memory`` need a re-exec, which must happen first). The rule, in order:
  ``JAX_PLATFORMS`` set: its first platform (JAX tries them in order); else ``SSLJAX_ACCELERATOR``;
  else an accelerator only when its JAX plugin is installed *and* its device nodes exist
  (``/dev/nvidia*`` for CUDA, as JAX checks; ``/dev/accel*`` / ``/dev/vfio`` for TPU); else the CPU.
  A wrong guess costs speed, never results: the settings only change how malloc reuses memory.
* **actual**: ``jax.default_backend()`` once JAX runs. When an accelerator is visible but JAX runs
  on the CPU, :func:`backend_warning` says so in one line, with what to install.

The compute dtype ``"auto"`` (the default) is bfloat16 on GPU/TPU, whose matrix units run bf16 at
several times their float32 rate, and float32 on the CPU, where bf16 is slower (XLA:CPU, a 2048^3
GEMM on this project's 2-core machine: 185 GFLOP/s in bf16 against 234 in float32). Parameters,
losses and optimizer state stay float32 either way (``ssljax.models``: ``dtype`` is the compute
dtype only).
"""
from __future__ import annotations

import glob
import importlib.util
import os
import pathlib
import subprocess
import sys

ENV_VAR = "SSLJAX_ACCELERATOR"
ACCELERATORS = ("cpu", "cuda", "tpu")
# The pip extra of ssljax for each (pyproject.toml); the CPU needs none.
EXTRAS = {"cpu": "", "cuda": "cuda", "tpu": "tpu"}
# JAX's platform names, as jax.default_backend() returns them.
BACKENDS = {"cpu": "cpu", "cuda": "gpu", "tpu": "tpu"}
# The import names of JAX's accelerator plugins (jax[cuda13], jax[cuda12], jax[tpu]).
PLUGINS = {"cuda": ("jax_cuda13_plugin", "jax_cuda12_plugin"), "tpu": ("libtpu",)}

_GOOGLE_PCI_VENDOR = "0x1ae0"
# TPU chips' PCI device ids (v3, v4, v5p, v5e, v6e, 7x), as in jax._src.hardware_utils; the vendor
# alone would also match Google's virtual NIC on every GCE VM.
_TPU_PCI_DEVICES = ("0x0027", "0x0056", "0x005e", "0x0062", "0x0063", "0x006f", "0x0076")


class AcceleratorError(ValueError):
  """An invalid ``SSLJAX_ACCELERATOR``; the message is the one line to show."""


def requested(env=None) -> str | None:
  """``SSLJAX_ACCELERATOR`` checked (lower-cased), or None when unset."""
  value = (os.environ if env is None else env).get(ENV_VAR, "").strip().lower()
  if not value:
    return None
  if value not in ACCELERATORS:
    raise AcceleratorError(f"{ENV_VAR}={value!r} is not one of {', '.join(ACCELERATORS)}; "
                           "unset it to detect the machine's accelerator")
  return value


def nvidia_gpu_visible() -> bool:
  """Whether ``nvidia-smi -L`` (on PATH) runs and lists a GPU: the driver sees one."""
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10,
                         stdin=subprocess.DEVNULL)
  except (OSError, subprocess.SubprocessError):
    return False
  return out.returncode == 0 and "GPU" in out.stdout


def tpu_visible(root: str = "/") -> bool:
  """Whether a TPU chip is on the PCI bus or a TPU device node exists under ``root``."""
  root = pathlib.Path(root)
  for vendor in glob.glob(str(root / "sys/bus/pci/devices/*/vendor")):
    try:
      if (pathlib.Path(vendor).read_text().strip() == _GOOGLE_PCI_VENDOR and
          (pathlib.Path(vendor).parent / "device").read_text().strip() in _TPU_PCI_DEVICES):
        return True
    except OSError:
      continue
  return bool(glob.glob(str(root / "dev/accel[0-9]*")))


def visible(env=None) -> str:
  """The accelerator of this machine: ``SSLJAX_ACCELERATOR``, else the detected one, else cpu."""
  forced = requested(env)
  if forced:
    return forced
  if nvidia_gpu_visible():
    return "cuda"
  return "tpu" if tpu_visible() else "cpu"


def plugin_installed(accelerator: str) -> bool:
  """Whether a JAX plugin for ``accelerator`` is importable (looked up, not imported)."""
  return any(importlib.util.find_spec(name) is not None for name in PLUGINS.get(accelerator, ()))


def _device_nodes(accelerator: str, root: str = "/") -> bool:
  patterns = {"cuda": ("dev/nvidia[0-9]*", "dev/nvidiactl", "dev/dxg"),
              "tpu": ("dev/accel[0-9]*", "dev/vfio/[0-9]*")}[accelerator]
  return any(glob.glob(str(pathlib.Path(root) / p)) for p in patterns)


def expected_backend(env=None) -> str:
  """The JAX backend (cpu | gpu | tpu) this process will most likely get, decided before JAX is
  imported; the rule is in the module docstring."""
  env = os.environ if env is None else env
  platforms = [p.strip().lower() for p in env.get("JAX_PLATFORMS", "").split(",") if p.strip()]
  if platforms:
    return {"cuda": "gpu", "rocm": "gpu"}.get(platforms[0], platforms[0])
  try:
    forced = requested(env)
  except AcceleratorError:
    forced = None  # the CLI reports it once JAX runs; the guess must not fail
  if forced:
    return BACKENDS[forced]
  for accelerator in ("cuda", "tpu"):
    if plugin_installed(accelerator) and _device_nodes(accelerator):
      return BACKENDS[accelerator]
  return "cpu"


def compute_dtype(name: str, backend: str | None = None) -> str:
  """The compute dtype ``name`` (a config's ``dtype``) stands for on ``backend`` (default: JAX's):
  ``"auto"`` is bfloat16 on GPU/TPU and float32 on the CPU (why: module docstring)."""
  if name != "auto":
    return name
  if backend is None:
    import jax
    backend = jax.default_backend()
  return "float32" if backend == "cpu" else "bfloat16"


def backend_warning(backend: str, env=None, seen: str | None = None) -> str | None:
  """One line when an accelerator is visible (``seen``, default :func:`visible`) but JAX's
  ``backend`` is the CPU; None when they agree or the CPU was asked for (``JAX_PLATFORMS=cpu``,
  ``SSLJAX_ACCELERATOR=cpu``)."""
  env = os.environ if env is None else env
  if backend != "cpu" or env.get("JAX_PLATFORMS", "").strip().lower().startswith("cpu"):
    return None
  seen = visible(env) if seen is None else seen
  if seen == "cpu":
    return None
  what = {"cuda": "an NVIDIA GPU is visible (nvidia-smi)", "tpu": "a TPU is visible"}[seen]
  why = (f"jax's {seen} plugin is installed but failed to start (driver or library versions: "
         "see jax's own warning above)" if plugin_installed(seen)
         else "the installed jax is the CPU-only build")
  return (f"warning: {what} but jax runs on the CPU: {why}; install the plugin with "
          f"pip install -e '.[{EXTRAS[seen]}]' or rerun a launch/ script (it runs "
          f"launch/setup.sh), or set JAX_PLATFORMS=cpu to run on the CPU on purpose")


def warn_if_accelerator_unused(stream=None) -> str | None:
  """Prints :func:`backend_warning` for JAX's backend (to stderr) and returns it."""
  import jax
  try:
    message = backend_warning(jax.default_backend())
  except AcceleratorError as e:
    message = f"warning: {e}"
  if message:
    print(message, file=stream or sys.stderr, flush=True)
  return message


def main(argv=None) -> int:
  """``python -m ssljax.accelerator``: prints the detected accelerator and its pip extra as
  ``<accelerator> <extra>`` (what ``launch/setup.sh`` installs); exit code 2 and one line on an
  invalid ``SSLJAX_ACCELERATOR``."""
  del argv
  try:
    accelerator = visible()
  except AcceleratorError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"{accelerator} {EXTRAS[accelerator] or '-'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
