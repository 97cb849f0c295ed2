"""Orbax checkpoints of the whole TrainState (tensorstore data, never pickles).

Resume order, written down once: (1) build the fresh state (its shapes and shardings are the
restore target), (2) restore the latest *readable* checkpoint into it, (3) the restored ``step``
fixes the data position and every per-step RNG key, so the run continues as if never stopped.

Why a kill cannot break a checkpoint: Orbax writes step N into ``N.orbax-checkpoint-tmp-<time>``
and renames it to ``N`` only once every file is written (``commit_success.txt`` marks it on
filesystems without atomic rename). Step listing ignores the temporary names, and
``cleanup_tmp_directories`` deletes leftovers when the next run starts, so a kill mid-save leaves
the previous checkpoint as the latest. Tensorstore's OCDBT format checksums what it reads, so a
damaged file fails loudly on restore; :meth:`Checkpoints.restore_latest` then reports it in one
line, moves it aside (``N.unreadable``, kept for inspection, invisible to Orbax) and uses the one
before.
"""
from __future__ import annotations

import hashlib
import pathlib
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from ssljax.errors import UserError
from ssljax.train.state import TrainState, model_collections


class Checkpoints:
  def __init__(self, directory: str | pathlib.Path, keep: int = 2):
    self.directory = pathlib.Path(directory).absolute()
    # Keep the newest ``keep`` steps. A preservation policy, not ``max_to_keep``: that option is
    # deprecated in orbax-checkpoint 0.12 (the policy is what it is translated into anyway).
    # The handler named up front: a manager that has not saved yet cannot read metadata without it.
    self.manager = ocp.CheckpointManager(
        self.directory, item_handlers=ocp.StandardCheckpointHandler(),
        options=ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(n=keep), create=True,
            cleanup_tmp_directories=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, state: TrainState, force: bool = False) -> None:
    """Starts an asynchronous save (training goes on while it writes). Orbax copies the arrays to
    the host before returning, so the next step may donate the state's buffers."""
    self.manager.save(int(jax.device_get(state.step)), args=ocp.args.StandardSave(state),
                      force=force)

  def restore(self, template: TrainState, step: int | None = None) -> TrainState:
    """Restores ``step`` (default: latest) with the shapes, dtypes and shardings of ``template``."""
    step = self.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    self._check_shapes(abstract, step)
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def _check_shapes(self, abstract: TrainState, step: int) -> None:
    """A ValueError naming the first array that is missing from checkpoint ``step`` or stored with
    another shape, raised from its metadata before any array is read. Left to Orbax, the mismatch
    surfaces mid-restore, and the reads still in flight print "Event loop is closed" tracebacks
    from TensorStore's threads, around the one-line error a user should see."""
    metadata = self.manager.item_metadata(step)
    if metadata is None:  # its _METADATA file is gone: as damaged as a bad array file
      raise ValueError(f"checkpoint {step} has no array metadata")
    stored = {_path_name(path): getattr(leaf, "shape", None)
              for path, leaf in jax.tree_util.tree_flatten_with_path(metadata.tree)[0]}
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]:
      name = _path_name(path)
      if name not in stored:
        raise ValueError(f"{name} is not in the checkpoint")
      if stored[name] is not None and tuple(stored[name]) != tuple(leaf.shape):
        raise ValueError(f"{name} is stored with shape {tuple(stored[name])}; this config builds "
                         f"{tuple(leaf.shape)}")

  def restore_latest(self, template: TrainState) -> tuple[TrainState, int]:
    """The newest checkpoint that restores, and its step; ``(template, 0)`` when there is none.

    Unreadable newer ones are reported and moved aside once an older one restores (so later saves
    can reuse their step numbers). When none restores nothing is moved: that is more likely a
    changed code or config than damage to every checkpoint.
    """
    steps = sorted(self.manager.all_steps(), reverse=True)
    failures = []
    for step in steps:
      try:
        state = self.restore(template, step)
      except Exception as e:  # tensorstore/orbax raise ValueError, OSError, JSONDecodeError...
        failures.append((step, f"{type(e).__name__}: {_first_line(e)}"))
        continue
      for bad, why in failures:
        aside = self._move_aside(bad)
        print(f"warning: checkpoint {self.directory / str(bad)} is unreadable ({why[:300]}); "
              f"moved it to {aside.name} and resumed from step {step} instead", file=sys.stderr)
      return state, step
    if failures:
      step, why = failures[0]
      raise UserError(f"no checkpoint in {self.directory} can be restored (step {step}: "
                      f"{why[:300]}); if the code or config changed, use a new --workdir; to "
                      f"start this run over, delete {self.directory}")
    return template, 0

  def _move_aside(self, step: int) -> pathlib.Path:
    source = self.directory / str(step)
    target = self.directory / f"{step}.unreadable"
    n = 1
    while target.exists():
      n += 1
      target = self.directory / f"{step}.unreadable{n}"
    if jax.process_index() == 0:
      source.rename(target)
    self.manager.reload()
    return target

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def _path_name(path) -> str:
  """``params/head/kernel``: the same for the state (attribute keys) and its metadata (dictionary
  keys)."""
  return jax.tree_util.keystr(path, simple=True, separator="/")


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else ""


def fingerprint(tree) -> str:
  """sha256 over a pytree's leaves in key-path order: each leaf's path, dtype, shape and bytes (C
  order), so two runs' fingerprints match exactly when their values are bit-identical."""
  h = hashlib.sha256()
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  for path, leaf in sorted(leaves, key=lambda item: jax.tree_util.keystr(item[0])):
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      leaf = leaf.addressable_data(0)  # replicated over hosts: every process holds all of it
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{jax.tree_util.keystr(path)}|{a.dtype.str}|{a.shape}|".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def state_fingerprint(state: TrainState) -> str:
  """The report's ``params_fingerprint``: every collection of the state but the optimizers'
  (parameters, running statistics, followers, objective state), so a resumed run matches an
  uninterrupted one only when all of what it learned is bit-identical."""
  return fingerprint(model_collections(state))
