"""Where a result came from: library versions, the machine's accelerator, the source tree's git
commit and the command line, saved with every run (``config.json``) and report (``report.json``).

What it never holds: environment variables. They are where secrets live (``WANDB_API_KEY``,
cloud credentials), and a run directory is something people share. Everything here is read from
the interpreter, JAX and git, and a missing git (or a source tree that is not a checkout) gives
``null`` rather than an error: provenance must never stop a run.
"""
from __future__ import annotations

import importlib.metadata
import pathlib
import platform
import shlex
import subprocess
import sys

# Distribution names as installed (importlib.metadata), in the order a reader looks for them.
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy")

# The directory holding the ssljax package: the checkout's root when run from one.
SOURCE_ROOT = pathlib.Path(__file__).resolve().parent.parent


def provenance(argv: list[str] | None = None) -> dict:
  """Versions, devices, git state and the shell-quoted command line (``sys.argv`` by default)."""
  import jax
  commit, dirty = git_state(SOURCE_ROOT)
  devices = jax.devices()
  return {
      "versions": {name: _version(name) for name in PACKAGES},
      "python": platform.python_version(),
      "backend": jax.default_backend(),
      "device_kind": devices[0].device_kind if devices else None,
      "device_count": jax.device_count(),
      "process_count": jax.process_count(),
      "git_commit": commit,
      "git_dirty": dirty,
      "command": shlex.join(sys.argv if argv is None else argv),
  }


def _version(name: str) -> str | None:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def git_state(directory: pathlib.Path) -> tuple[str | None, bool | None]:
  """(HEAD commit, whether tracked files differ from it) of the checkout rooted at ``directory``;
  ``(None, None)`` when git is missing or ``directory`` is not the root of a checkout (an installed
  package inside some unrelated repository must not report that repository's commit)."""
  top = _git(directory, "rev-parse", "--show-toplevel")
  if top is None or pathlib.Path(top).resolve() != pathlib.Path(directory).resolve():
    return None, None
  commit = _git(directory, "rev-parse", "HEAD")
  status = _git(directory, "status", "--porcelain", "--untracked-files=no")
  return commit, (None if status is None or commit is None else bool(status))


def _git(directory: pathlib.Path, *args: str) -> str | None:
  try:
    result = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True,
                            timeout=10, stdin=subprocess.DEVNULL)
  except (OSError, subprocess.SubprocessError):  # no git, or it hung
    return None
  return result.stdout.strip() if result.returncode == 0 else None
