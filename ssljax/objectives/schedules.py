"""Schedules of the training step for what objectives vary over a run: a follower's EMA momentum,
a teacher's temperature, a loss weight. Objectives know the run's length (``total_steps``) from
their inputs and get the step in their loss, so a schedule is a plain function ``step -> value``,
traceable under jit (``step`` is an int32 array there).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Schedule = Callable[[jax.Array], jax.Array]


def constant(value: float) -> Schedule:
  return lambda step: jnp.asarray(value, jnp.float32)


def cosine_to_one(base: float, total_steps: int) -> Schedule:
  """BYOL's target momentum (Grill et al. 2020, eq. in section 3.2; ``target_ema`` in DeepMind's
  byol code): ``m(k) = 1 - (1 - base) * (cos(pi * k / K) + 1) / 2``, from ``base`` at step 0 to 1
  at step K = ``total_steps``, so the target freezes as training ends."""
  def momentum(step):
    progress = jnp.asarray(step, jnp.float32) / max(int(total_steps), 1)
    return 1.0 - (1.0 - base) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0
  return momentum


def linear_warmup(start: float, end: float, warmup_steps: int) -> Schedule:
  """From ``start`` to ``end`` over ``warmup_steps``, then ``end`` (DINO's teacher temperature)."""
  def value(step):
    progress = jnp.clip(jnp.asarray(step, jnp.float32) / max(int(warmup_steps), 1), 0.0, 1.0)
    return start + (end - start) * progress
  return value
