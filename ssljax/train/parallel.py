"""The device mesh and the two shardings the whole project uses.

A 1-D mesh ``('data',)`` over every device of every process. Batches are split along it; parameters
and optimizer state are replicated. The train step is jitted over the *global* batch, so InfoNCE
negatives and BatchNorm statistics are global without a line of collective code: XLA inserts the
all-reduces.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from ssljax.errors import UserError

DATA_AXIS = "data"


def make_mesh(num_devices: int = 0) -> Mesh:
  """A 1-D data mesh over the first ``num_devices`` devices (0 = all of them)."""
  devices = jax.devices()
  if num_devices:
    if num_devices > len(devices):
      raise UserError(f"devices={num_devices} but only {len(devices)} are available")
    devices = devices[:num_devices]
  # Auto axes: the step is written for the global batch and XLA's partitioner does the rest.
  return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_divisible(global_batch: int, mesh: Mesh) -> None:
  if global_batch % mesh.size:
    raise UserError(f"batch_size {global_batch} is not divisible by the {mesh.size} devices; "
                    f"use a multiple of {mesh.size}, or --config.devices=N to use fewer")
