"""The one timer the benchmarks share: the median of repeated calls, after untimed warm-up calls
(compilation, caches, first-touch memory). Medians, because this machine is shared and noisy."""
from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats: int, warmup: int = 2) -> float:
  """Median wall time of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed ones. ``fn``
  must wait for its own result (``jax.block_until_ready``) so that the time covers the work."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)
