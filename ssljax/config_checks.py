"""Config validation before anything expensive runs, so a typo costs a second, not a crash an hour in.

Three checks, each ending in one UserError line that names the key and what to do:

- :func:`check_config`: names (dataset kind, encoder, objective, optimizer), types and ranges of the
  keys every run reads, and the chosen objective's arguments (its own ``check_args``). All
  problems are reported at once, so one rerun fixes them all.
- :func:`check_image_fits`: the encoder's init under ``jax.eval_shape`` (shapes only, no compute) on
  the data's image shape: an image its convolutions and pooling shrink to nothing is an error here
  rather than a ZeroDivisionError inside ``jit`` or NaN features; probe feature names are checked
  against the stages it really has.
- :func:`resume_conflicts`: which keys of a saved ``config.json`` may not change when a run resumes
  from its checkpoints (everything but the allow-list of keys that do not change what a checkpoint
  means).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from ssljax.errors import UserError

WANDB_MODES = ("auto", "online", "offline", "disabled")
NONFINITE_POLICIES = ("stop", "skip")
DTYPES = ("auto", "float32", "bfloat16")  # auto: by backend (ssljax/accelerator.py)

# Keys that may change between a run and its resumption: logging, evaluation and placement. Anything
# else (encoder, objective, data, batch size, seed, optimizer, schedule length, views...) changes
# what the saved parameters and optimizer state mean, so resuming under it would be a different run.
RESUMABLE_PREFIXES = ("wandb.", "probe.", "knn.", "transfer.", "rank.", "geometry.")
RESUMABLE_KEYS = {"log_every", "checkpoint_every", "keep_checkpoints", "devices", "cpu_devices",
                  "nonfinite"}


class _Problems:
  """Collects one phrase per bad key; ``raise_if_any`` joins them into one line."""

  def __init__(self, config):
    self.config = config
    self.items: list[str] = []

  def get(self, key: str) -> Any:
    node = self.config
    for part in key.split("."):
      if part not in node:
        self.items.append(f"{key} is missing (start configs from ssljax.base_config.base_config())")
        return None
      node = node[part]
    return node

  def number(self, key: str, integer: bool = False, low: float | None = None,
             high: float | None = None, low_open: bool = False, high_open: bool = False) -> None:
    value = self.get(key)
    if value is None:
      return
    problem = number_problem(key, value, integer, low, high, low_open, high_open)
    if problem:
      self.items.append(problem)

  def choice(self, key: str, valid: Iterable[str]) -> None:
    value = self.get(key)
    if value is not None and value not in valid:
      self.items.append(f"{key} {value!r} unknown; valid: {', '.join(valid)}")

  def pair(self, key: str, low: float, high: float | None, low_open: bool = True) -> None:
    value = self.get(key)
    if value is None:
      return
    where = _interval(low, high, low_open, False)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
      self.items.append(f"{key} must be a pair (low, high) in {where}, got {value!r}")
      return
    lo, hi = value
    inside = lambda v: (v > low if low_open else v >= low) and (high is None or v <= high)
    if not (inside(lo) and inside(hi) and lo <= hi):
      self.items.append(f"{key} must be a pair low <= high in {where}, got {tuple(value)!r}")

  def raise_if_any(self) -> None:
    if self.items:  # every phrase starts with the key it is about
      raise UserError("; ".join(self.items))


def number_problem(key: str, value: Any, integer: bool = False, low: float | None = None,
                   high: float | None = None, low_open: bool = False,
                   high_open: bool = False) -> str | None:
  """The phrase saying why ``value`` is not a number (an integer) within the bounds, or None.
  Shared with the objectives' ``check_args``, so every range error reads the same."""
  kind = "an integer" if integer else "a number"
  ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
  if isinstance(value, bool) or not ok_type or (not integer and not math.isfinite(value)):
    return f"{key} must be {kind}, got {value!r} ({type(value).__name__})"
  if (low is not None and (value <= low if low_open else value < low)) or \
     (high is not None and (value >= high if high_open else value > high)):
    return f"{key} must be {_bounds(low, high, low_open, high_open)}, got {value!r}"
  return None


def _bounds(low, high, low_open, high_open) -> str:
  if high is None:
    return f"{'>' if low_open else '>='} {low}"
  return f"in {_interval(low, high, low_open, high_open)}"


def _interval(low, high, low_open, high_open) -> str:
  left = "(" if low_open or low is None else "["
  right = ")" if high_open or high is None else "]"
  return f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"


FEATURE_DTYPES = ("float32", "bfloat16")  # how ssljax/evaluate/features.py may store features


def check_config(config) -> None:
  """Raises one UserError listing every invalid key of ``config`` (unknown names list valid ones)."""
  from ssljax.data.sources import SOURCES
  from ssljax.models import ENCODERS
  from ssljax.objectives import OBJECTIVES
  from ssljax.objectives.base import resolve_args
  from ssljax.train.optim import build_optimizer

  p = _Problems(config)
  for key, registry in (("encoder", ENCODERS), ("objective", OBJECTIVES)):
    name = p.get(key)
    if name is not None and name not in registry:
      p.items.append(f"unknown {registry.kind} {name!r}; valid names: {', '.join(registry.names())}")
  dataset = p.get("dataset")
  if not isinstance(dataset, str) or not dataset:
    p.items.append(f"dataset must be a spec such as fashion_mnist or npz:PATH, got {dataset!r}")
  elif dataset.partition(":")[0] not in SOURCES:
    p.items.append(f"unknown dataset source {dataset.partition(':')[0]!r}; valid names: "
                   f"{', '.join(SOURCES.names())}")
  p.number("batch_size", integer=True, low=1)
  p.number("epochs", low=0)
  p.number("steps", integer=True, low=0)
  if p.get("steps") == 0 and p.get("epochs") == 0:
    p.items.append("epochs and steps are both 0: set --config.epochs > 0 or --config.steps > 0")
  p.number("seed", integer=True)
  p.number("devices", integer=True, low=0)
  p.number("cpu_devices", integer=True, low=0)
  p.choice("dtype", DTYPES)
  p.pair("views.scale", 0, 1)
  p.pair("views.ratio", 0, None)
  p.number("views.flip_prob", low=0, high=1)
  p.number("optimizer.lr", low=0, low_open=True)
  p.number("optimizer.weight_decay", low=0)
  p.number("optimizer.warmup_steps", integer=True, low=0)
  p.number("optimizer.momentum", low=0, high=1, high_open=True)
  p.number("optimizer.b1", low=0, high=1, high_open=True)
  if "optimizer" in config:
    try:  # the optimizer module owns its names and schedules; ask it instead of copying them
      build_optimizer(config.optimizer, 10)
    except UserError as e:
      p.items.append(str(e))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
      p.items.append(f"optimizer section is incomplete or mistyped ({type(e).__name__}: {e})")
  p.number("log_every", integer=True, low=1)
  p.number("checkpoint_every", integer=True, low=1)
  p.number("keep_checkpoints", integer=True, low=1)
  for key in ("probe.features", "knn.features", "online_probe_features"):
    value = p.get(key)
    if value is not None and (not isinstance(value, str) or not value):
      p.items.append(f"{key} must be 'pooled', 'last_stage' or a stage name, got {value!r}")
  extra = p.get("probe.extra_features")
  if extra is not None and (isinstance(extra, str)
                            or not all(isinstance(v, str) and v for v in extra)):
    p.items.append("probe.extra_features must be a tuple of feature names, e.g. "
                   f"('last_stage',), got {extra!r}")
  for key in ("probe.lrs", "probe.weight_decays"):
    grid = p.get(key)
    if grid is not None and (isinstance(grid, (str, int, float)) or len(grid) == 0
                             or not all(isinstance(v, (int, float)) and v >= 0 for v in grid)):
      p.items.append(f"{key} must be a non-empty tuple of numbers >= 0 (the probe's grid), "
                     f"got {grid!r}")
  p.number("probe.epochs", integer=True, low=0)
  p.number("probe.batch_size", integer=True, low=1)
  p.number("probe.seeds", integer=True, low=1)
  p.number("probe.val_fraction", low=0, high=1, low_open=True, high_open=True)
  p.number("probe.train_subset", integer=True, low=0)
  p.choice("probe.feature_dtype", FEATURE_DTYPES)
  p.number("knn.k", integer=True, low=1)
  p.number("knn.temperature", low=0, low_open=True)
  p.number("rank.rankme_images", integer=True, low=2)
  p.number("rank.lidar_images", integer=True, low=2)  # a between-class spread needs two classes
  p.number("rank.lidar_views", integer=True, low=2)   # a within-class spread needs two views
  p.number("geometry.images", integer=True, low=2)    # uniformity needs pairs of images
  p.choice("wandb.mode", WANDB_MODES)
  if config.get("nonfinite") is not None:
    p.choice("nonfinite", NONFINITE_POLICIES)
  name = config.get("objective")
  if name in OBJECTIVES:  # each objective checks its own arguments (unknown names too)
    _, problems = resolve_args(OBJECTIVES[name], (config.get("objectives") or {}).get(name) or {})
    p.items.extend(f"objectives.{name}.{problem}" for problem in problems)
    encoder = config.get("encoder")
    if encoder in ENCODERS:  # and whether it can train that encoder (MAE: ViTs only)
      problem = OBJECTIVES[name].encoder_problem(encoder, ENCODERS[encoder])
      p.items.extend([problem] if problem else [])
  p.raise_if_any()


def check_image_fits(encoder_name: str, encoder, image_shape: tuple[int, ...],
                     feature_keys: Mapping[str, str]) -> None:
  """Shape-only init of ``encoder`` on ``image_shape``; ``feature_keys`` maps config keys (e.g.
  ``probe.features``) to the stage names they ask for."""
  stages = _stage_shapes(encoder, image_shape)
  if stages is None or any(0 in s for s in stages.values()):
    h, w = image_shape[:2]
    minimum = _smallest_side(encoder, image_shape)
    if minimum is None and stages is None:
      _stage_shapes(encoder, image_shape, catch=False)  # fails at any size: a bug, not the data
    needs = f"it needs at least {minimum}x{minimum}" if minimum else "it needs larger images"
    raise UserError(
        f"image {h}x{w} is too small for encoder {encoder_name!r} ({needs}: its convolutions and "
        "pooling shrink the image to nothing); resize the data, or use an encoder that pads, e.g. "
        "--config.encoder=cnn or resnet18")
  for key, which in feature_keys.items():
    if which not in ("pooled", "last_stage") and which not in stages:
      raise UserError(f"{key} {which!r} unknown for encoder {encoder_name!r}; use 'pooled', "
                      f"'last_stage' or one of its stages: {', '.join(stages)}")


def _stage_shapes(encoder, image_shape, catch: bool = True) -> dict[str, tuple[int, ...]] | None:
  """{stage: shape} of the encoder on a batch of 2 images, or None when it cannot run on them."""
  import jax
  import jax.numpy as jnp

  def init(x):
    key = jax.random.PRNGKey(0)
    return encoder.init_with_output({"params": key, "dropout": key}, x, train=False)[0]

  try:
    _, stages = jax.eval_shape(init, jax.ShapeDtypeStruct((2, *image_shape), jnp.float32))
  except (ZeroDivisionError, ValueError, TypeError, IndexError):  # what shape errors raise
    if not catch:
      raise
    return None
  return {name: tuple(s.shape) for name, s in stages.items()}


def _smallest_side(encoder, image_shape, limit: int = 512) -> int | None:
  """The smallest square side the encoder runs on (binary search with shape-only inits)."""
  def fits(side):
    stages = _stage_shapes(encoder, (side, side, *image_shape[2:]))
    return stages is not None and not any(0 in s for s in stages.values())
  low, high = max(image_shape[:2]), limit
  if not fits(high):
    return None
  while high - low > 1:
    mid = (low + high) // 2
    low, high = (low, mid) if fits(mid) else (mid, high)
  return high


def flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values."""
  out = {}
  for key, value in d.items():
    if isinstance(value, Mapping) and value:
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def resume_conflicts(saved: Mapping, new: Mapping, defaults: Mapping | None = None,
                     free_prefixes: tuple[str, ...] = RESUMABLE_PREFIXES,
                     free_keys: Iterable[str] = RESUMABLE_KEYS) -> list[str]:
  """'key: saved -> new' for every key that differs and may not change on resume (any key but
  ``free_keys`` and those under ``free_prefixes``). A key the saved config lacks (added to the
  project after the run started) is no conflict while ``new`` keeps its value from ``defaults``:
  the run simply predates the option."""
  old, cur = flatten(saved), flatten(new)
  base = flatten(defaults or {})
  free_keys = set(free_keys)
  conflicts = []
  for key in sorted(set(old) | set(cur)):
    if key in free_keys or key.startswith(free_prefixes):
      continue
    section, _, rest = key.partition(".")
    if section in ("encoders", "objectives") and rest:
      # Only the chosen encoder's/objective's section is saved; when the choice itself changed,
      # the 'encoder'/'objective' key says so and the sections' keys would only be noise.
      name = rest.split(".")[0]
      if name not in saved.get(section, {}) or name not in new.get(section, {}):
        continue
    a, b = old.get(key, _MISSING), cur.get(key, _MISSING)
    if a is _MISSING and key in base and b == base[key]:
      continue
    if a != b:
      conflicts.append(f"{key}: {_show(a)} -> {_show(b)}")
  return conflicts


_MISSING = object()


def _show(value) -> str:
  return "(not set)" if value is _MISSING else repr(value)
