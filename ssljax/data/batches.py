"""Host-side batching: a stateless stream where global batch ``step`` is a pure function of
``(seed, step)``.

Grain's ``MapDataset`` gives the shuffled index order (reshuffled every epoch, random access), and
numpy gathers the rows: one fancy-index per batch instead of one Python call per image. Because a
batch depends only on its step number, the "iterator position" a checkpoint must restore is the
step itself, and a resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import grain
import jax
import numpy as np
from jax.sharding import Sharding

from ssljax.errors import UserError


class BatchStream:
  """Yields sharded global batches ``{'images': uint8 (B,H,W,C), 'labels': int32 (B,)}``."""

  def __init__(self, images: np.ndarray, labels: np.ndarray | None, global_batch: int, seed: int,
               sharding: Sharding):
    """``sharding``: how a global batch lies on the devices (``train.parallel.batch_sharding``),
    given by the caller: data knows nothing of meshes."""
    if global_batch > len(images):
      raise UserError(f"batch_size {global_batch} is larger than the dataset ({len(images)} images)")
    self.images = images
    # Unlabelled data still gets a labels array so every batch has the same structure; -1 marks
    # "no label" and the online probe ignores it.
    self.labels = labels if labels is not None else np.full(len(images), -1, np.int32)
    self.global_batch = global_batch
    self.sharding = sharding
    num_processes = jax.process_count()
    if global_batch % num_processes:
      raise UserError(f"batch_size {global_batch} is not divisible by the {num_processes} processes")
    self._local = slice(jax.process_index() * global_batch // num_processes,
                        (jax.process_index() + 1) * global_batch // num_processes)
    # Every process builds the same global order and keeps its own rows of each batch.
    self._order = grain.MapDataset.range(len(images)).shuffle(seed=seed).repeat().batch(
        global_batch)

  @property
  def steps_per_epoch(self) -> int:
    return len(self.images) // self.global_batch

  def host_batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's rows of global batch ``step`` as numpy arrays."""
    index = np.asarray(self._order[step])[self._local]
    return {"images": self.images[index], "labels": self.labels[index]}

  def batch(self, step: int) -> dict[str, jax.Array]:
    """Global batch ``step`` as arrays sharded over the mesh's ``data`` axis."""
    return {k: jax.make_array_from_process_local_data(self.sharding, v)
            for k, v in self.host_batch(step).items()}
