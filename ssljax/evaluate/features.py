"""Frozen-encoder features for a whole split, computed in fixed-size sharded batches (one compile).

The arrays are allocated 64-byte aligned (``aligned_empty``): XLA:CPU then reads them where they
are (``jax.device_put(x, may_alias=True)`` aliases an aligned host array instead of copying it), so
the linear probe holds a flattened map of 60k images (3 GB) once, not twice."""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from ssljax.data import views
from ssljax.objectives.base import Objective, select_features
from ssljax.train import parallel


@functools.partial(jax.jit, static_argnames=("objective", "which"))
def _forward(variables, batch, *, objective: Objective, which: tuple[str, ...]):
  # Module level, the objective static (hashed by identity): every split, the trained and the
  # untrained encoder of a run share one compiled forward pass per shape.
  pooled, stages = objective.features(variables, views.to_float(batch))
  return {name: select_features(pooled, stages, name) for name in which}


ALIGNMENT = 64  # bytes: what XLA:CPU needs to alias a host buffer


def aligned_empty(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
  """``np.empty(shape, dtype)`` whose data starts on a ``ALIGNMENT``-byte boundary (numpy only
  promises 16)."""
  size = int(np.prod(shape)) * np.dtype(dtype).itemsize
  raw = np.empty(size + ALIGNMENT, np.uint8)
  offset = -raw.ctypes.data % ALIGNMENT
  return raw[offset:offset + size].view(dtype).reshape(shape)


def storage_dtype(probe_config) -> np.dtype:
  """The numpy dtype ``probe_config.feature_dtype`` names ('float32' or 'bfloat16'); a run saved
  before the key existed stored float32."""
  name = probe_config.get("feature_dtype", "float32")
  return np.dtype(jnp.bfloat16 if name == "bfloat16" else np.float32)


def extract_features(objective: Objective, variables: dict, images: np.ndarray,
                     mesh: jax.sharding.Mesh, which: Sequence[str] = ("pooled",),
                     batch_size: int = 1024, desc: str = "features",
                     dtype: np.dtype = np.dtype(np.float32)) -> dict[str, np.ndarray]:
  """Returns {name: (N, D) of ``dtype``} for each requested representation (see
  ``select_features``); the encoder computes in its own dtype, the rows are rounded when stored."""
  batch_size = max(mesh.size, batch_size // mesh.size * mesh.size)
  forward = functools.partial(_forward, objective=objective, which=tuple(which))

  sharding = parallel.batch_sharding(mesh)
  # Filled in place: concatenating per-batch parts would hold a flattened map twice.
  outputs: dict[str, np.ndarray] = {}
  n = len(images)
  for start in tqdm(range(0, n, batch_size), desc=desc, leave=False,
                    disable=jax.process_index() != 0):
    chunk = images[start:start + batch_size]
    pad = batch_size - len(chunk)
    if pad:  # keep one shape so the function compiles once
      chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
    result = forward(variables, jax.device_put(chunk, sharding))
    for name, value in result.items():
      if not value.is_fully_addressable:  # several processes: each gathers every row
        value = multihost_utils.process_allgather(value, tiled=True)
      if name not in outputs:
        outputs[name] = aligned_empty((n, *value.shape[1:]), dtype)
      outputs[name][start:start + batch_size - pad] = np.asarray(value)[:batch_size - pad]
  return outputs


def variables_of(state) -> dict:
  """What ``Objective.features``, ``teacher_variables`` and ``image_grids`` read of a train state
  (followers and the objective's state included: an EMA teacher's parameters and BatchNorm
  statistics)."""
  return {"params": state.params, "batch_stats": state.batch_stats, "followers": state.followers,
          "objective_state": state.objective_state}
