"""Where metrics go: ``DIR/metrics.jsonl`` (appended and flushed, so it survives a crash), Weights &
Biases (online, offline or disabled), and the console.

W&B must never be the reason a run dies: mode ``auto`` picks online only when an API key is
configured, and any failure to start it falls back to offline, then to disabled, with a warning.
"""
from __future__ import annotations

import json
import logging
import netrc
import os
import pathlib
import uuid
from typing import Any, Mapping

import numpy as np

log = logging.getLogger("ssljax")


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
    self.jsonl = open(pathlib.Path(workdir) / "metrics.jsonl", "a", buffering=1)
    mode = resolve_wandb_mode(wandb_config.get("mode", "auto"))
    if mode != "disabled":
      self.run = self._start_wandb(workdir, config, wandb_config, mode)

  def _start_wandb(self, workdir, config, wandb_config, mode):
    import wandb
    # The same workdir resumes the same W&B run.
    id_file = pathlib.Path(workdir) / "wandb_run_id"
    run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
    id_file.write_text(run_id)
    for attempt in ([mode, "offline"] if mode == "online" else [mode]):
      try:
        run = wandb.init(project=wandb_config.get("project") or "ssljax",
                         entity=wandb_config.get("entity") or None,
                         name=wandb_config.get("name") or None, tags=list(wandb_config.get("tags", ())),
                         dir=str(workdir), mode=attempt, id=run_id, resume="allow",
                         config=dict(config), settings=wandb.Settings(init_timeout=60, silent=True))
        self.wandb_mode = attempt
        return run
      except Exception as e:  # network, auth, service start-up: never fatal
        log.warning("W&B %s start failed (%s: %s); %s", attempt, type(e).__name__, e,
                    "trying offline" if attempt == "online" else "continuing without W&B")
    return None

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
