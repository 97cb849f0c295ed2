"""The one exception type that means "the user asked for something we cannot do".

Entry points catch it and print its message as a single line (no traceback unless --debug): it must
therefore say what went wrong *and* what to do about it.
"""
import sys


class UserError(Exception):
  """A problem with the user's input (config, data, workdir), not a bug in ssljax."""


def run_app(main) -> None:
  """``absl.app.run(main)`` for every command-line entry point: a UserError becomes one line on
  stderr and exit code 2; ``--debug`` shows the traceback instead."""
  from absl import app
  debug = "--debug" in sys.argv or any(a.startswith("--debug=t") for a in sys.argv)
  try:
    app.run(main)
  except UserError as e:
    if debug:
      raise
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
