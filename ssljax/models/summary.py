"""Per-layer summaries of encoders: output shapes, parameter counts and multiply-adds.

Everything is traced with ``jax.eval_shape``: shapes only, no arrays, no compilation. That is what
lets ``python -m ssljax.models vgg19 --input-shape 224,224,3`` describe a 143M-parameter network in
a second without allocating it, and lets tests pin parameter counts of the whole zoo cheaply.

Layers are found by intercepting every Flax module call (``nn.intercept_methods``), so the counts
come from the layers the module really built, never from constants kept beside it. Multiply-adds of
a layer with a ``kernel`` (Conv, Dense, depthwise conv alike) are
``output elements x kernel elements per output channel`` = prod(out[1:]) * prod(kernel[:-1]): for a
conv that is H*W*C_out * kh*kw*C_in/groups. Pools, activations and BatchNorm are not counted, which
is the convention of the papers' cost figures. "Parameters" means the ``params`` collection only:
BatchNorm running statistics are state, not parameters.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax.errors import UserError
from ssljax.models.registry import build_encoder


@dataclasses.dataclass
class Layer:
  path: str                # module path inside the encoder, e.g. "inception3a/b3/conv"
  shape: tuple[int, ...]   # output shape without the batch dimension
  params: int              # parameters owned by this layer itself (not its children)
  macs: int                # multiply-adds for one input image


@dataclasses.dataclass
class Trace:
  layers: list[Layer]
  params: Any              # the params collection as ShapeDtypeStructs
  features: tuple[int, ...]           # () when the module traced is not an encoder
  stages: dict[str, tuple[int, ...]]  # in network order

  @property
  def total_params(self) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(self.params))

  @property
  def total_macs(self) -> int:
    return sum(layer.macs for layer in self.layers)


def _subtree(tree, path: Sequence[str]):
  for name in path:
    tree = tree.get(name, {}) if isinstance(tree, dict) else {}
  return tree if isinstance(tree, dict) else {}


def _is_encoder_output(out) -> bool:
  return isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)


def trace(module: nn.Module, input_shape: Sequence[int], batch: int = 1) -> Trace:
  """Runs ``module.init`` abstractly on a (batch, *input_shape) input and records every layer."""
  calls = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and context.module.path:
      calls.append((tuple(context.module.path), out))
    return out

  def init():
    x = jnp.zeros((batch, *input_shape), jnp.float32)
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    with nn.intercept_methods(record):
      out = module.init_with_output(rngs, x, train=False)
    if _is_encoder_output(out[0]):
      stage_order.extend(out[0][1])  # eval_shape returns dicts key-sorted; keep network order
    return out

  stage_order = []
  output, variables = jax.eval_shape(init)
  params = dict(variables).get("params", {})  # plain dicts in current Flax
  parents = {path[:i] for path, _ in calls for i in range(len(path))}
  layers = []
  for path, out in calls:
    own = {k: v for k, v in _subtree(params, path).items() if not isinstance(v, dict)}
    if path in parents and not own:
      continue  # a container (block, Inception module): its layers have their own rows
    shapes = [leaf.shape for leaf in jax.tree.leaves(out)]
    shape = tuple(shapes[0][1:]) if len(shapes) == 1 else tuple(tuple(s[1:]) for s in shapes)
    macs = 0
    if "kernel" in own and len(shapes) == 1:
      macs = math.prod(shapes[0][1:]) * math.prod(own["kernel"].shape[:-1])
    layers.append(Layer("/".join(path), shape, sum(math.prod(v.shape) for v in own.values()), macs))
  if not _is_encoder_output(output):  # a single layer or block (count_macs of an Inception module)
    return Trace(layers, params, (), {})
  features, stages = output
  return Trace(layers, params, tuple(features.shape[1:]),
               {k: tuple(stages[k].shape[1:]) for k in stage_order})


def count_macs(module: nn.Module, input_shape: Sequence[int]) -> int:
  """Multiply-adds of ``module`` for one input of ``input_shape`` (H, W, C), from its own layers."""
  return trace(module, input_shape).total_macs


def _classifier_params(trace_: Trace, num_classes: int | None) -> int:
  if not num_classes:
    return 0
  (dim,) = trace_.features
  return dim * num_classes + num_classes


def count_params(name: str, input_shape: Sequence[int], num_classes: int | None = None,
                 **args) -> int:
  """Parameters of encoder ``name`` built with ``args`` on ``input_shape`` (H, W, C), plus a
  ``num_classes``-way linear classifier on its features when given."""
  t = trace(build_encoder(name, args), input_shape)
  return t.total_params + _classifier_params(t, num_classes)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  fmt = lambda r: "  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])])
  return [fmt(rows[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]]


def summarize(name: str, input_shape: Sequence[int], num_classes: int | None = None,
              **args) -> str:
  """The text ``python -m ssljax.models`` prints: layers, stages, totals; last line is the count."""
  input_shape = tuple(input_shape)
  if len(input_shape) != 3 or min(input_shape) < 1:
    raise UserError(f"input shape must be H,W,C with positive sizes, got {input_shape}")
  t = trace(build_encoder(name, args), input_shape)
  fmt_shape = lambda s: "x".join(map(str, s)) if all(isinstance(d, int) for d in s) else str(s)
  rows = [("layer", "output", "params", "MACs")]
  rows += [(l.path, fmt_shape(l.shape), f"{l.params:,}", f"{l.macs:,}") for l in t.layers]
  head = _classifier_params(t, num_classes)
  if head:
    rows.append((f"(linear classifier, {num_classes} classes)", str(num_classes), f"{head:,}",
                 f"{head - num_classes:,}"))
  lines = [f"{name} on {fmt_shape(input_shape)}" + (f", args {args}" if args else "")]
  lines += _table(rows)
  lines += ["", f"features: {fmt_shape(t.features)}", "stages:"]
  lines += [f"  {k}: {fmt_shape(v)}" for k, v in t.stages.items()]
  lines += [f"total MACs per image: {t.total_macs + (head - num_classes if head else 0):,}",
            f"total params: {t.total_params + head}"]
  return "\n".join(lines)
