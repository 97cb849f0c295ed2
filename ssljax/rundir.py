"""The run directory: its guards (one run at a time, writable, resumed only under a compatible
config) and the one owner of ``config.json``'s format (resolve, write, read, resume policy).

Two runs writing one ``--workdir`` would interleave checkpoints and metrics and silently corrupt
both, so a run holds an exclusive ``fcntl.flock`` on ``DIR/.lock`` (holding its PID, for the
message) for as long as it runs. The kernel drops the lock when the process dies, even by
``kill -9``, so a crash never leaves a stale lock behind. Only the main process locks: on many hosts
the others share the same directory on purpose.

Rerunning a command resumes from ``DIR/checkpoints``; if the config changed in a way that changes
what those checkpoints mean (encoder, objective, data, batch size, seed, optimizer, schedule
length...), resuming would silently produce a run of neither config. The saved ``config.json`` is
compared with the new one first and the differing keys are shown. ``config.json`` also holds the
``provenance`` of the invocation that wrote it (versions, devices, git commit, command line); that
describes where the run ran, not what it computes, so resuming ignores it and rewrites it.

``config.json`` holds the resolved config (:func:`resolved_config`: only the chosen encoder's and
objective's argument sections), written by :func:`write_config`, read back by :func:`read_config`
(the document) and :func:`load_run_config` (a ConfigDict to rebuild the run with, keys added to
``base_config`` since the run filled in with their defaults).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pathlib
import tempfile
from typing import Iterator, Mapping

import ml_collections

from ssljax.accelerator import compute_dtype
from ssljax.config_checks import resume_conflicts
from ssljax.errors import UserError
from ssljax.provenance import provenance

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
PROVENANCE = "provenance"  # config.json's key for the provenance record (not a config key)


def resolved_config(config: ml_collections.ConfigDict) -> dict:
  """The config as saved to config.json: only the chosen encoder's and objective's sections, and
  ``dtype`` as this backend resolves it (``auto`` becomes what the networks compute in)."""
  d = config.to_dict()
  if "dtype" in d:
    d["dtype"] = compute_dtype(d["dtype"])
  d["encoders"] = {config.encoder: d["encoders"].get(config.encoder, {})}
  d["objectives"] = {config.objective: d["objectives"].get(config.objective, {})}
  return d


@contextlib.contextmanager
def claim_workdir(workdir: pathlib.Path, is_main: bool = True) -> Iterator[pathlib.Path]:
  """Creates ``workdir``, checks it is writable and holds its lock while the block runs."""
  workdir = pathlib.Path(workdir)
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create workdir {workdir}: {e.strerror}; choose another --workdir") from None
  if not is_main:
    yield workdir
    return
  _check_writable(workdir)
  fd = os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise
      pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
      raise UserError(f"{workdir} is in use by another run (pid {pid}); wait for it to finish, "
                      "or use another --workdir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    yield workdir
  finally:
    os.close(fd)  # closing the descriptor releases the lock; the file stays (unlinking races)


def _check_writable(workdir: pathlib.Path) -> None:
  try:
    with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write-test-"):
      pass
  except OSError as e:
    raise UserError(f"workdir {workdir} is not writable ({e.strerror}); fix its permissions or "
                    "choose another --workdir") from None


def has_checkpoints(workdir: pathlib.Path) -> bool:
  directory = pathlib.Path(workdir) / "checkpoints"
  return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


def check_resumable(workdir: pathlib.Path, resolved: Mapping, defaults: Mapping | None = None
                    ) -> None:
  """Raises a UserError when ``workdir`` holds checkpoints of a run whose saved config differs from
  ``resolved`` in a key that may not change on resume (keys newer than the run are fine while they
  keep their ``defaults`` value)."""
  workdir = pathlib.Path(workdir)
  saved_path = workdir / CONFIG_FILE
  if not saved_path.exists() or not has_checkpoints(workdir):
    return  # nothing to resume: the new config simply replaces the old one
  try:
    saved = json.loads(saved_path.read_text())
  except (OSError, ValueError) as e:
    raise UserError(f"{saved_path} is unreadable ({e}); it describes the checkpoints in "
                    f"{workdir / 'checkpoints'}: restore it, or use another --workdir") from None
  saved.pop(PROVENANCE, None)  # where and how the run was started: free to differ
  new = {k: v for k, v in json.loads(json.dumps(resolved)).items()  # tuples -> lists, as saved
         if k != PROVENANCE}
  conflicts = resume_conflicts(saved, new, json.loads(json.dumps(defaults or {})))
  if conflicts:
    shown = "; ".join(conflicts[:8]) + (f"; and {len(conflicts) - 8} more" if len(conflicts) > 8 else "")
    raise UserError(f"{workdir} holds checkpoints of a run with a different config ({shown}); "
                    "resuming would mix two runs: rerun with the saved values (see "
                    f"{saved_path}) or use a new --workdir")


def write_config(workdir: pathlib.Path, resolved: Mapping, record: Mapping | None = None) -> None:
  """Writes ``config.json`` atomically (a crash mid-write must not leave half a config): the
  resolved config, and under ``provenance`` this invocation's ``record`` (default: measured now)."""
  path = pathlib.Path(workdir) / CONFIG_FILE
  tmp = path.with_name(path.name + ".tmp")
  document = {**resolved, PROVENANCE: dict(provenance() if record is None else record)}
  tmp.write_text(json.dumps(document, indent=2) + "\n")
  os.replace(tmp, path)


def read_config(workdir: pathlib.Path, missing_ok: bool = False) -> dict:
  """``config.json`` of ``workdir`` as saved (with its ``provenance``); ``{}`` when it is missing and
  ``missing_ok``."""
  workdir = pathlib.Path(workdir)
  path = workdir / CONFIG_FILE
  if not path.is_file():
    if missing_ok:
      return {}
    raise UserError(f"{workdir} has no {CONFIG_FILE}, so it is not a run directory; "
                    "`python -m ssljax.pretrain --workdir=DIR` writes one")
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise UserError(f"{path} is not valid JSON ({e})") from None


def load_run_config(workdir: pathlib.Path, overrides: Mapping | None = None
                    ) -> tuple[ml_collections.ConfigDict, dict]:
  """(the config to rebuild the run of ``workdir`` with, its saved config without provenance).

  Keys added to ``base_config`` since the run wrote its config.json take their defaults; JSON lists
  become the tuples configs hold, so ``overrides`` (flattened ``{"probe.seeds": 3}``) type-check.
  """
  from ssljax.base_config import base_config
  saved = {k: v for k, v in read_config(workdir).items() if k != PROVENANCE}
  if "online_probe_features" not in saved:  # runs from before the key: the head read probe.features
    saved = {**saved, "online_probe_features": saved.get("probe", {}).get("features", "pooled")}
  config = ml_collections.ConfigDict(_tuples(_merge(base_config().to_dict(), saved)))
  try:
    config.update_from_flattened_dict(dict(overrides or {}))
  except (KeyError, TypeError) as e:
    raise UserError(f"cannot apply the overrides to the run's config: {e}") from None
  return config, saved


def _tuples(value):
  """JSON lists back to the tuples configs hold (so overrides type-check against them)."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def _merge(defaults: dict, saved: dict) -> dict:
  """``defaults`` with ``saved`` written over them, section by section."""
  out = dict(defaults)
  for key, value in saved.items():
    if isinstance(value, dict) and isinstance(out.get(key), dict):
      out[key] = _merge(out[key], value)
    else:
      out[key] = value
  return out
