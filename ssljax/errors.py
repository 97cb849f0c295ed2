"""The one exception type that means "the user asked for something we cannot do".

Entry points catch it and print its message as a single line (no traceback unless --debug): it must
therefore say what went wrong *and* what to do about it.
"""


class UserError(Exception):
  """A problem with the user's input (config, data, workdir), not a bug in ssljax."""
