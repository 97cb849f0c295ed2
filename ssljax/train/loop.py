"""The pretraining loop: build everything from the config, resume, train, log, checkpoint.

Per step the host gathers the next batch, dispatches the compiled step and waits for the step
before it (one step of look-ahead, see ``_pretrain``); metrics stay on the device and are pulled
every ``log_every`` steps.
"""
from __future__ import annotations

import dataclasses
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
from tqdm.auto import tqdm

from ssljax.accelerator import compute_dtype
from ssljax.config_checks import check_config, check_image_fits
from ssljax.data.batches import BatchStream
from ssljax.data.sources import Dataset, load_dataset
from ssljax.errors import UserError
from ssljax.metric_names import RUNNING_COUNTS, headline_losses
from ssljax.models import build_encoder
from ssljax.objectives import Objective, build_objective
from ssljax.objectives.online_probe import OnlineProbe, build_online_probe
from ssljax.tracking import MetricsWriter, read_metrics
from ssljax.train import parallel
from ssljax.train import stopping
from ssljax.train.checkpoint import Checkpoints
from ssljax.train.optim import build_optimizer
from ssljax.train.state import TrainState, create_state
from ssljax.train.step import jit_train_step, make_train_step
from ssljax.train.summary import last_logged, pretrain_summary


@dataclasses.dataclass
class Experiment:
  """Everything built from a config, before any training."""
  config: ml_collections.ConfigDict
  dataset: Dataset
  mesh: jax.sharding.Mesh
  objective: Objective
  stream: BatchStream
  total_steps: int
  txs: dict
  probe: OnlineProbe | None  # the harness's online probe (None: off, or no labels)


def build_experiment(config: ml_collections.ConfigDict, dataset: Dataset | None = None) -> Experiment:
  check_config(config)  # before loading anything: a typo costs a second
  dataset = dataset or load_dataset(config.dataset)
  mesh = parallel.make_mesh(config.devices)
  parallel.check_batch_divisible(config.batch_size, mesh)
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[compute_dtype(config.dtype)]
  encoder_args = dict(config.encoders.get(config.encoder, {}))
  encoder = build_encoder(config.encoder, {**encoder_args, "dtype": dtype})
  check_image_fits(config.encoder, encoder, dataset.image_shape,
                   {"probe.features": config.probe.features, "knn.features": config.knn.features,
                    "online_probe_features": config.get("online_probe_features", "pooled"),
                    **{f"probe.extra_features[{i}]": name
                       for i, name in enumerate(config.probe.get("extra_features", ()))}})
  stream = BatchStream(dataset.train_images, dataset.train_labels, config.batch_size, config.seed,
                       parallel.batch_sharding(mesh))
  # The run's length before the objective: its schedules (EMA momentum, temperatures) need it.
  total_steps = int(config.steps) or max(1, int(round(config.epochs * stream.steps_per_epoch)))
  objective = build_objective(config, encoder, dataset.image_shape, dataset.num_classes,
                              total_steps)
  if objective.needs_labels and dataset.train_labels is None:
    raise UserError(f"objective {config.objective!r} trains on labels, and dataset "
                    f"{dataset.name!r} has none; give it labelled data (e.g. an npz with a "
                    "'labels' array) or choose a self-supervised objective")
  txs = {p.name: build_optimizer(p.optimizer, total_steps) for p in objective.players()}
  probe = build_online_probe(config.online_probe, dataset.num_classes)
  return Experiment(config, dataset, mesh, objective, stream, total_steps, txs, probe)


def initial_state(exp: Experiment) -> TrainState:
  sample = jnp.zeros((2, *exp.dataset.image_shape), jnp.float32)
  init = jax.jit(lambda: create_state(exp.objective, exp.txs, exp.config.seed, sample, exp.probe),
                 out_shardings=parallel.replicated(exp.mesh))
  return init()


def compiled_train_step(exp: Experiment, players=None):
  """The generic step of ``exp`` (of ``players`` only, default all), jitted over its mesh."""
  step = make_train_step(exp.objective.players() if players is None else players, exp.txs,
                         followers=exp.objective.followers(), probe=exp.probe)
  return jit_train_step(step, parallel.replicated(exp.mesh), parallel.batch_sharding(exp.mesh),
                        parallel.replicated(exp.mesh))


def run_steps(exp: Experiment, steps: int, initial=None) -> tuple[list[dict], TrainState]:
  """``steps`` generic train steps of ``exp`` with no workdir, checkpoints or logging; returns (the
  per-step metrics, the final state), both on the host. ``initial``: a host state to start from
  instead of initialising (a state does not depend on the mesh, so one initialisation serves every
  device count). Device-count equivalence is checked with it, in the tests and on accelerators."""
  state = (initial_state(exp) if initial is None
           else jax.device_put(initial, parallel.replicated(exp.mesh)))
  step = compiled_train_step(exp)
  history = []
  for s in range(steps):
    state, metrics = step(state, exp.stream.batch(s))
    history.append(jax.device_get(metrics))
  return history, jax.device_get(state)


def pretrain(exp: Experiment, workdir: pathlib.Path, writer: MetricsWriter) -> tuple[TrainState, dict]:
  """Trains to ``exp.total_steps`` (resuming from the latest checkpoint) and returns the final state
  and the ``pretrain`` section of the report. A stop signal ends it with a checkpoint and
  ``stopping.Preempted``; a NaN/Inf step (``config.nonfinite == "stop"``) with a UserError."""
  with stopping.catch_stop_signals() as stop:  # a signal during restore or compile counts too
    return _pretrain(exp, workdir, writer, stop)


def _pretrain(exp, workdir, writer, stop: stopping.PreemptionFlag) -> tuple[TrainState, dict]:
  config = exp.config
  checkpoints = Checkpoints(workdir / "checkpoints", keep=config.keep_checkpoints)
  try:
    state, start = checkpoints.restore_latest(initial_state(exp))
  except BaseException:
    checkpoints.close()
    raise
  if start:
    print(f"Resuming from the checkpoint at step {start} in {checkpoints.directory}")
  writer.rewind(start)  # metrics logged after that checkpoint will be logged again
  players = [p.name for p in exp.objective.players()]

  def check_finite(count) -> None:
    """Called only where the host reads the device anyway (logging, before a save)."""
    if count and config.get("nonfinite", "stop") == "stop":
      raise stopping.nonfinite_error(
          state.nonfinite, players, config.optimizer,
          exp.objective.nonfinite_hints(exp.objective.args), checkpoints.latest_step(),
          checkpoints.directory)

  def checked_save(force=False) -> None:
    check_finite(int(jax.device_get(state.nonfinite["count"])))
    checkpoints.save(state, force=force)

  step_fn = compiled_train_step(exp)
  timing = _Throughput()
  last = {}
  # A bar redraws itself with carriage returns: in a file (a Slurm log, a pipe) that is one
  # unreadable line of thousands of updates, so there each logged step prints a line of its own.
  is_main, plain = jax.process_index() == 0, not _is_terminal(sys.stderr)
  bar = tqdm(range(start, exp.total_steps), initial=start, total=exp.total_steps, desc="pretrain",
             unit="step", dynamic_ncols=True, disable=plain or not is_main)
  window = MetricsWindow()
  in_flight = None
  try:
    for step in bar:
      state, metrics = step_fn(state, exp.stream.batch(step))
      # The host waits for the step before this one, so at most two steps are queued. Left free to
      # run up to log_every steps ahead, the GAN on 2 fake CPU devices stalled (3 runs of 3, as the
      # 2048-wide LeJEPA once had): one device waited 40 s at an all-reduce for the other and
      # XLA:CPU aborted the run. One step of look-ahead still overlaps the next batch with a step.
      if in_flight is not None:
        jax.block_until_ready(in_flight)
      in_flight = metrics
      window.add(metrics)
      done = step + 1
      if done % config.log_every == 0 or done == exp.total_steps:
        last = window.mean_and_reset()  # the only copy to the host
        images_per_s = timing.update(done, config.batch_size)
        writer.write(done, {**last, "images_per_s": images_per_s,
                            "epoch": done / exp.stream.steps_per_epoch})
        shown = ({name: f"{value:.4f}" for name, value in headline_losses(last).items()}
                 | {"img_s": f"{images_per_s:.0f}"})
        if plain and is_main:
          print(progress_line(done, exp.total_steps, shown), file=sys.stderr, flush=True)
        bar.set_postfix(shown)
        check_finite(last.get("nonfinite_steps", 0))
      if done % config.checkpoint_every == 0 and done < exp.total_steps:
        checked_save()
      if stop.requested(done):
        if checkpoints.latest_step() != done:
          checked_save(force=True)
        raise stopping.Preempted(done, exp.total_steps, checkpoints.directory, stop.signal_name)
    if checkpoints.latest_step() != exp.total_steps:
      checked_save(force=True)
  finally:
    bar.close()
    checkpoints.close()  # waits for an in-flight asynchronous save, even when a step failed
  if not last:  # resumed at the end, nothing trained now: the loss the run logged when it got there
    last = last_logged(read_metrics(workdir), exp.total_steps)
  summary = pretrain_summary(exp, state, last, resumed_from_step=start, wall_s=timing.wall_s,
                             images_per_s=timing.images_per_s)
  return state, summary


class MetricsWindow:
  """The mean of each metric over the steps since the last log, summed on the device as the steps
  are dispatched (one small fused add per step, no host sync): a logged figure describes its whole
  ``log_every`` window, not one batch. Running counts (``nonfinite_steps``) are not averaged: the
  window's last value is the count."""

  def __init__(self):
    self.sum, self.last, self.steps = None, None, 0
    self._add = jax.jit(lambda total, new: jax.tree.map(jnp.add, total, new))

  def add(self, metrics: dict) -> None:
    self.sum = metrics if self.sum is None else self._add(self.sum, metrics)
    self.last, self.steps = metrics, self.steps + 1

  def mean_and_reset(self) -> dict[str, float]:
    total, last = jax.device_get((self.sum, self.last))
    mean = {k: float(last[k]) if k in RUNNING_COUNTS else float(v) / self.steps
            for k, v in total.items()}
    self.sum, self.last, self.steps = None, None, 0
    return mean


def _is_terminal(stream) -> bool:
  return bool(stream is not None and getattr(stream, "isatty", lambda: False)())


def progress_line(step: int, total: int, shown: dict[str, str]) -> str:
  """``pretrain step 150/702 (21%) loss=3.0568 img_s=512``: the bar's content as one line."""
  figures = " ".join(f"{k}={v}" for k, v in shown.items() if v != "nan")  # nan: compile interval
  return f"pretrain step {step}/{total} ({100 * step // total}%) {figures}".rstrip()


class _Throughput:
  """Images/s between logging points; the run's figure excludes the first interval (compile)."""

  def __init__(self):
    self.start = time.perf_counter()
    self.first = None  # (time, step) at the first logged step
    self.last = None
    self.batch_size = 0

  def update(self, step: int, batch_size: int) -> float:
    now = time.perf_counter()
    self.batch_size = batch_size
    prev = self.last or (self.start, None)
    self.last = (now, step)
    if self.first is None:
      self.first = (now, step)
      return float("nan")  # this interval includes compilation
    return batch_size * (step - prev[1]) / max(now - prev[0], 1e-9)

  @property
  def wall_s(self) -> float:
    return time.perf_counter() - self.start

  @property
  def images_per_s(self) -> float | None:
    if self.first is None or self.last[1] == self.first[1]:
      return None
    return self.batch_size * (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])

