"""Why a run stops before its last step, and what it leaves behind.

- **Preemption** (SIGTERM from a scheduler, SIGINT from Ctrl-C): the handler only sets a flag; the
  loop sees it after the step in flight, writes a checkpoint, waits for it and raises
  :class:`Preempted`, which the CLI turns into "how to resume" and exit code 0. A second signal
  gets the default behaviour back, so a stuck save can still be interrupted (the previous
  checkpoint survives: Orbax renames a save into place only once it is complete).
- **Non-finite values**: the generic step never applies a NaN/Inf update (it keeps the old
  parameters and counts the step in ``state.nonfinite``). With ``config.nonfinite = "stop"`` the loop
  stops at the next point where it reads the device anyway (logging, checkpointing), so detection
  costs no extra host sync; the message names the first bad step and metric and keeps the last good
  checkpoint. With ``"skip"`` training goes on and the count is reported.

On many hosts a signal reaches each process at a different step; a local flag would make one
process stop and save while the others wait in a collective forever. There JAX's preemption sync
manager (started by ``jax.distributed.initialize``) picks one step for all processes instead.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Sequence

import jax

from ssljax.errors import UserError
from ssljax.metric_names import metric_name

# Bit 2p of state.nonfinite["first_what"]: player p's loss; bit 2p+1: its gradient norm.
LOSS_BIT, GRAD_BIT = 1, 2


class Preempted(Exception):
  """Training stopped on a signal after checkpointing ``step``; rerunning the command resumes."""

  def __init__(self, step: int, total: int, checkpoint_dir, signal_name: str):
    super().__init__(f"stopped by {signal_name} after step {step} of {total}")
    self.step, self.total = step, total
    self.checkpoint_dir, self.signal_name = checkpoint_dir, signal_name


class PreemptionFlag:
  """``requested(step)`` is True once a stop signal arrived (on every process at the same step)."""

  def __init__(self):
    self.signal_name: str | None = None
    self._multihost = jax.process_count() > 1

  def _handle(self, signum, frame):
    self.signal_name = signal.Signals(signum).name
    for sig in (signal.SIGTERM, signal.SIGINT):  # a second signal acts at once
      signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)

  def requested(self, step: int) -> bool:
    if self._multihost:
      from jax.experimental import multihost_utils
      try:
        if multihost_utils.reached_preemption_sync_point(step):
          self.signal_name = self.signal_name or "SIGTERM"
          return True
      except RuntimeError:  # preemption service disabled: no coordinated stop
        return False
      return False
    return self.signal_name is not None


@contextlib.contextmanager
def catch_stop_signals() -> Iterator[PreemptionFlag]:
  """Installs the SIGTERM/SIGINT handlers for the block (main thread, single process only)."""
  flag = PreemptionFlag()
  if flag._multihost or threading.current_thread() is not threading.main_thread():
    yield flag
    return
  previous = {sig: signal.signal(sig, flag._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield flag
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)


def nonfinite_error(nonfinite: dict, player_names: Sequence[str], optimizer,
                    objective_hints: Sequence[str], checkpoint_step: int | None,
                    checkpoint_dir) -> UserError:
  """The one line a user sees when ``config.nonfinite == "stop"`` and a step went NaN/Inf.
  ``optimizer``: ``config.optimizer``; ``objective_hints``: the objective's ``nonfinite_hints``."""
  info = {k: int(v) for k, v in jax.device_get(nonfinite).items()}
  what = []
  for p, name in enumerate(player_names):
    if info["first_what"] >> (2 * p) & LOSS_BIT:
      what.append(metric_name(name, "total_loss"))
    if info["first_what"] >> (2 * p) & GRAD_BIT:
      what.append(metric_name(name, "grad_norm"))
  hint = [f"lower --config.optimizer.lr (now {optimizer.lr:g})", *objective_hints]
  if not optimizer.get("grad_clip", 0):
    hint.append("set --config.optimizer.grad_clip=1.0")
  kept = (f"the last good checkpoint is step {checkpoint_step} in {checkpoint_dir}"
          if checkpoint_step else "no checkpoint was written")
  return UserError(
      f"non-finite {' and '.join(what) or 'value'} (NaN or Inf) at step {info['first_step'] + 1}; "
      f"stopped, {kept}. Try: {', or '.join(hint)}, in a new --workdir; or "
      "--config.nonfinite=skip to skip such steps")

