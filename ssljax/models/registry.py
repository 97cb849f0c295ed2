"""The encoder registry.

Encoder contract: a Flax Linen module whose ``__call__(images, train)`` maps images (B, H, W, C) float
in [0, 1] to ``(features (B, D), stages)`` where ``stages`` is a dict of intermediate outputs in
network order (the last entry is the final feature map before pooling, if the design has one).
Encoders know nothing about objectives; input size and channel count come from the data.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn

from ssljax.errors import UserError
from ssljax.registry import Registry

ENCODERS: Registry[type[nn.Module]] = Registry("encoder")
register_encoder = ENCODERS.register


def build_encoder(name: str, args: Mapping[str, Any] | None = None) -> nn.Module:
  """Instantiates the named encoder with keyword ``args`` (e.g. from ``config.encoder_args``)."""
  cls = ENCODERS[name]
  args = dict(args or {})
  fields = {f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")}
  unknown = sorted(set(args) - fields)
  if unknown:
    raise UserError(f"encoder {name!r} has no argument(s) {', '.join(unknown)}; "
                    f"it accepts: {', '.join(sorted(fields))}")
  # ConfigDict turns tuples into lists; Flax wants hashable fields.
  args = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
  return cls(**args)
