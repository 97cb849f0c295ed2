"""``python -m ssljax.models NAME --input-shape H,W,C [--num-classes K] [--arg key=value ...]``

Prints an encoder's per-layer table (path, output shape, parameters, multiply-adds), its stages and
totals, ending with ``total params: N``. Nothing is allocated (``summary`` traces with
``jax.eval_shape``), so the largest encoders print in seconds. Mistakes (unknown name or argument,
bad shape) print one line on stderr and exit 2, as every ssljax entry point does with a UserError.
"""
from __future__ import annotations

import argparse
import ast
import sys

from ssljax.errors import UserError
from ssljax.models import ENCODERS
from ssljax.models.summary import summarize


def _parse_shape(text: str) -> tuple[int, ...]:
  try:
    return tuple(int(v) for v in text.split(","))
  except ValueError:
    raise UserError(f"--input-shape must be H,W,C integers, e.g. 32,32,3; got {text!r}") from None


def _parse_arg(text: str) -> tuple[str, object]:
  key, sep, value = text.partition("=")
  if not sep or not key:
    raise UserError(f"--arg must be key=value, got {text!r}")
  try:
    return key, ast.literal_eval(value)  # numbers, tuples, booleans
  except (ValueError, SyntaxError):
    return key, value                      # anything else is a string: stem=imagenet


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m ssljax.models", description="Summarise an encoder of the registry.",
      epilog="encoders: " + ", ".join(ENCODERS.names()))
  parser.add_argument("name", help="encoder name")
  parser.add_argument("--input-shape", required=True, help="H,W,C of one image, e.g. 32,32,3")
  parser.add_argument("--num-classes", type=int, default=None,
                      help="add a K-way linear classifier on the features to the count")
  parser.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                      help="encoder argument (repeatable), e.g. --arg stem=imagenet")
  opts = parser.parse_args(argv)
  try:
    args = dict(_parse_arg(a) for a in opts.arg)
    print(summarize(opts.name, _parse_shape(opts.input_shape), opts.num_classes, **args))
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
