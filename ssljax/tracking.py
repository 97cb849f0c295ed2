"""Where metrics go: ``DIR/metrics.jsonl`` (appended and flushed, so it survives a crash), Weights &
Biases (online, offline or disabled), and the console.

W&B must never be the reason a run dies: mode ``auto`` picks online only when an API key is
configured, and any failure to start it falls back to offline, then to disabled, with a warning.
Online mode is checked before ``wandb.init`` is asked: without a key wandb would prompt on a
terminal, and with an unreachable server it would wait out its timeout. An offline run can be
uploaded later with ``wandb sync DIR/wandb/offline-run-*``.

A resumed run calls :meth:`MetricsWriter.rewind` so ``metrics.jsonl`` reads as one run: records
logged after the checkpoint it resumed from are dropped (they will be logged again).
"""
from __future__ import annotations

import json
import netrc
import os
import pathlib
import socket
import sys
import urllib.parse
import uuid
from typing import Any, Mapping

import numpy as np


def _has_wandb_key() -> bool:
  if os.environ.get("WANDB_API_KEY"):
    return True
  try:
    return netrc.netrc().authenticators("api.wandb.ai") is not None
  except (OSError, netrc.NetrcParseError):
    return False


def resolve_wandb_mode(mode: str) -> str:
  if mode == "auto":
    return "online" if _has_wandb_key() else "offline"
  if mode not in ("online", "offline", "disabled"):
    from ssljax.errors import UserError
    raise UserError(f"wandb.mode {mode!r} unknown; valid: auto, online, offline, disabled")
  return mode


def _plain(value: Any) -> Any:
  """JSON-friendly scalars from numpy/jax values."""
  if isinstance(value, (np.generic, np.ndarray)) or hasattr(value, "__array__"):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()
  return value


class MetricsWriter:
  """Writes metrics on the main process only; other processes get a no-op writer."""

  def __init__(self, workdir: pathlib.Path, config: Mapping, wandb_config: Mapping,
               is_main: bool = True):
    self.enabled = is_main
    self.run = None
    self.wandb_mode = "disabled"
    if not is_main:
      return
    self.path = pathlib.Path(workdir) / "metrics.jsonl"
    self.jsonl = open(self.path, "a", buffering=1)  # line-buffered: each record is flushed
    mode = resolve_wandb_mode(wandb_config.get("mode", "auto"))
    if mode != "disabled":
      self.run = self._start_wandb(workdir, config, wandb_config, mode)

  def _start_wandb(self, workdir, config, wandb_config, mode):
    import wandb
    # The same workdir resumes the same W&B run.
    id_file = pathlib.Path(workdir) / "wandb_run_id"
    # A W&B sweep agent names the run it started in WANDB_RUN_ID; another id would orphan that run.
    run_id = (os.environ.get("WANDB_RUN_ID")
              or (id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]))
    id_file.write_text(run_id)
    if mode == "online":
      problem = _online_problem()
      if problem:
        _warn(f"W&B online logging is not possible ({problem}); logging offline to "
              f"{pathlib.Path(workdir) / 'wandb'} (upload later with `wandb sync`)")
        mode = "offline"
    for attempt in ([mode, "offline"] if mode == "online" else [mode]):
      if attempt == "offline" and mode == "online":
        _teardown_wandb()  # the failed online attempt still holds the run id in wandb's service
      try:
        run = wandb.init(project=wandb_config.get("project") or "ssljax",
                         entity=wandb_config.get("entity") or None,
                         name=wandb_config.get("name") or None, tags=list(wandb_config.get("tags", ())),
                         dir=str(workdir), mode=attempt, id=run_id, resume="allow",
                         config=dict(config), settings=wandb.Settings(init_timeout=60, silent=True))
        self.wandb_mode = attempt
        return run
      except Exception as e:  # network, auth, service start-up: never fatal
        _warn(f"W&B {attempt} start failed ({type(e).__name__}: {_first_line(e)}); "
              + ("logging offline instead" if attempt == "online" else "continuing without W&B"))
    return None

  def rewind(self, step: int) -> None:
    """Drops records after ``step`` (a resumed run logs those steps again)."""
    if not self.enabled:
      return
    records = read_metrics(self.path.parent)
    kept = [r for r in records if r.get("step", 0) <= step]
    if len(kept) == len(records) and self.path.stat().st_size == _size_of(records):
      return  # nothing to drop, no torn line to clean up
    self.jsonl.close()
    tmp = self.path.with_name(self.path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, self.path)
    self.jsonl = open(self.path, "a", buffering=1)

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
    self.jsonl.write(json.dumps(record) + "\n")
    if self.run is not None:
      self.run.log({k: v for k, v in record.items() if k != "step"}, step=int(step))

  def summary(self, values: Mapping[str, Any]) -> None:
    if self.run is not None:
      for k, v in values.items():
        self.run.summary[k] = _plain(v)

  def log_artifacts(self, payload: Mapping[str, Any]) -> None:
    """Logs W&B objects (wandb.Image, wandb.Table) built by the caller."""
    if self.run is not None:
      self.run.log(dict(payload))

  def close(self) -> None:
    if not self.enabled:
      return
    self.jsonl.close()
    if self.run is not None:
      self.run.finish()
      self.run = None


def read_metrics(workdir: pathlib.Path) -> list[dict]:
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  records = []
  for line in path.read_text().splitlines():
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:  # a line cut short by a crash
      continue
  return records


def _size_of(records: list[dict]) -> int:
  return sum(len(json.dumps(r).encode()) + 1 for r in records)


def _warn(message: str) -> None:
  print(f"warning: {message}", file=sys.stderr, flush=True)


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  return text.splitlines()[0][:300] if text else ""


def _online_problem(timeout_s: float = 3.0) -> str | None:
  """Why online W&B cannot work from here (no API key, server unreachable), or None. Connects to
  the server's port only; behind a proxy (HTTP(S)_PROXY) it leaves the judgement to wandb."""
  if not _has_wandb_key():
    return "no API key: set WANDB_API_KEY or run `wandb login`"
  if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                                      "ALL_PROXY", "all_proxy")):
    return None
  url = urllib.parse.urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
  host, port = url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)
  try:
    socket.create_connection((host, port), timeout=timeout_s).close()
  except OSError as e:
    return f"{url.scheme}://{host}:{port} is unreachable: {e.strerror or type(e).__name__}"
  return None


def _teardown_wandb() -> None:
  try:
    import wandb
    wandb.teardown()
  except Exception:  # best effort: the offline attempt reports its own failure
    pass
