"""The one exception type that means "the user asked for something we cannot do", and the entry
point runner that turns it into one line.

Entry points catch it and print its message as a single line (no traceback unless --debug): it must
therefore say what went wrong *and* what to do about it. An unknown ``--config.KEY`` is such a
mistake, but ml_collections reports it as a bare KeyError/AttributeError while absl parses the
flags; :func:`parse_flags` turns exactly those (raised during parsing, nowhere else) into a
UserError, so a KeyError from a bug inside a run still shows its traceback.
"""
from __future__ import annotations

import gc
import re
import sys


class UserError(Exception):
  """A problem with the user's input (config, data, workdir), not a bug in ssljax."""


def unknown_config_key(error: Exception, argv) -> str | None:
  """The one-line message for an unknown ``--config.KEY`` of ``argv`` that ``error`` (raised while
  parsing the flags) is about, or None if it is not about one."""
  text = str(error)
  key = re.search(r"'(\w+)", text)
  suggestion = re.search(r'Did you mean \\?"(\w+)', text)
  for arg in argv[1:]:
    name = arg.split("=", 1)[0]
    if key and name.startswith("--config.") and name.split(".")[-1] == key.group(1):
      hint = f"did you mean {suggestion.group(1)!r}?" if suggestion else "check the config file"
      return f"{name}: the config has no key {key.group(1)!r}; {hint}"
  return None


def parse_flags(argv):
  """absl's flag parsing (usage on a malformed flag, exit code 1), where ml_collections applies the
  ``--config.KEY=VALUE`` overrides: an override of a key the config lacks becomes a UserError."""
  from absl import app
  try:
    return app.parse_flags_with_usage(argv)
  except (KeyError, AttributeError) as e:
    message = unknown_config_key(e, argv)
    if message is None:
      raise
    raise UserError(message) from None


def silence_abandoned_coroutines() -> None:
  """Stop Python from printing "Exception ignored in: <coroutine ...>" for the rest of the process.

  A failed Orbax restore leaves one unfinished TensorStore read coroutine per array; Python reports
  each as the garbage collector frees it, now or at exit, as a screenful of TensorStore specs after
  the one-line error. Only called once a run has already failed with a UserError."""
  sys.unraisablehook = lambda unraisable: None
  gc.collect()


def run_app(main) -> None:
  """``absl.app.run(main)`` for every command-line entry point: a UserError (including an unknown
  ``--config.KEY``) becomes one line on stderr and exit code 2; ``--debug`` shows the traceback."""
  from absl import app
  debug = "--debug" in sys.argv or any(a.startswith("--debug=t") for a in sys.argv)
  try:
    app.run(main, flags_parser=parse_flags)
  except UserError as e:
    if debug:
      raise
    silence_abandoned_coroutines()
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
