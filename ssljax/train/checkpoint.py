"""Orbax checkpoints of the whole TrainState (tensorstore data, never pickles).

Resume order, written down once: (1) build the fresh state (its shapes and shardings are the
restore target), (2) restore the latest complete checkpoint into it, (3) the restored ``step`` fixes
the data position and every per-step RNG key, so the run continues as if never stopped.
Orbax writes each save to a temporary directory and renames it when complete, so a kill during a
save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import pathlib

import jax
import orbax.checkpoint as ocp

from ssljax.train.state import TrainState


class Checkpoints:
  def __init__(self, directory: str | pathlib.Path, keep: int = 2):
    self.directory = pathlib.Path(directory).absolute()
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             cleanup_tmp_directories=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, state: TrainState, force: bool = False) -> None:
    """Starts an asynchronous save (training goes on while it writes)."""
    self.manager.save(int(jax.device_get(state.step)), args=ocp.args.StandardSave(state),
                      force=force)

  def restore(self, template: TrainState, step: int | None = None) -> TrainState:
    """Restores ``step`` (default: latest) with the shapes, dtypes and shardings of ``template``."""
    step = self.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
