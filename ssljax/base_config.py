"""The defaults every experiment config starts from, and the ``smoke`` shrink.

Experiment files (``experiments/*.py``) call :func:`base_config` and override what they change, the
Flax-examples way. Each objective's and encoder's arguments live in their own section,
``config.objectives.<name>`` and ``config.encoders.<name>``, filled from the registries' defaults so
that switching ``--config.objective`` or ``--config.encoder`` on the command line (or in a sweep grid)
always finds valid arguments. ``config.json`` keeps only the sections of the chosen ones.
"""
from __future__ import annotations

import dataclasses

import ml_collections

from ssljax.models import ENCODERS
from ssljax.objectives import OBJECTIVES


def encoder_defaults(name: str) -> dict:
  fields = dataclasses.fields(ENCODERS[name])
  return {f.name: f.default for f in fields
          if f.init and f.name not in ("parent", "name", "dtype")
          and f.default is not dataclasses.MISSING}


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.dataset = "fashion_mnist"  # spec: fashion_mnist | idx:DIR | tfds:NAME | npz:PATH | digits
  c.encoder = "cnn"
  c.objective = "infonce"
  c.encoders = {name: encoder_defaults(name) for name in ENCODERS}
  c.objectives = {name: dict(OBJECTIVES[name].default_config) for name in OBJECTIVES}

  c.batch_size = 256      # global: split over all devices of all processes
  c.epochs = 3.0          # may be fractional
  c.steps = 0             # > 0 overrides epochs (smoke runs, benchmarks)
  c.seed = 0
  c.devices = 0           # 0 = every device; N = the first N (device-count experiments)
  c.cpu_devices = 0       # CPU only: fake host devices to split the batch over; 0 = one per core
  # Compute dtype of the networks: auto | float32 | bfloat16; parameters, losses and optimizer
  # state stay float32. auto = bfloat16 on GPU/TPU, float32 on the CPU, where bf16 is slower (a
  # 2048^3 GEMM on XLA:CPU: 185 GFLOP/s in bf16, 234 in float32). config.json saves the resolved one.
  c.dtype = "auto"
  # > 0: embed the global batch this many images at a time, activations recomputed in the
  # backward pass (gradient caching, ssljax/objectives/microbatch.py): the same global negatives in
  # less memory. Must divide batch_size; best a multiple of the device count. 0 = off.
  c.micro_batch_size = 0

  c.views = dict(
      scale=(0.4, 1.0),    # random-resized-crop area fraction; milder than ImageNet's 0.08
      ratio=(3 / 4, 4 / 3),
      flip_prob=0.5,
      # The optional invariances; SimCLR's CIFAR strengths (colour jitter s=0.5).
      jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1,
      blur_prob=0.5, blur_sigma=(0.1, 2.0),  # sigma in pixels
      cutout_prob=1.0, cutout_size=0.5,      # side as a fraction of the shorter image side
  )
  c.optimizer = dict(
      name="adamw", lr=2e-3, weight_decay=1e-4, momentum=0.9, b1=0.9,
      schedule="cosine", warmup_steps=200, final_lr_fraction=0.0, grad_clip=0.0)

  c.online_probe = True   # linear head on stop_gradient(features), trained in the same step
  # What the online probe reads. Fixed by training (it sizes the head), so probe.features can
  # change at evaluation time and the checkpoint still restores.
  c.online_probe_features = "pooled"
  c.probe = dict(
      # Which representation probes read: 'pooled' (encoder output), 'last_stage' (its final map,
      # flattened) or a stage name. On small images the flattened map keeps spatial layout that
      # pooling throws away and probes markedly better.
      features="last_stage",
      # Chosen on the quickstart's validation split (experiments/benchmarks/probe_epochs.py,
      # trained and untrained encoders alike): the pooled 256-d output wants lr 0.1 and the
      # flattened 12,544-d map 1e-3, so the grid spans both. The former grid (1e-3, 3e-3) at 30
      # epochs left the pooled probe unconverged (validation 0.8670; 0.8812 at lr 0.1), and the
      # map is converged by 15 epochs (0.9240 at 15, 0.9227 at 30) at half the cost.
      epochs=15, batch_size=1024, val_fraction=0.1,
      lrs=(1e-3, 1e-2, 1e-1), weight_decays=(1e-5, 1e-3),
      seeds=3, raw_pixel_baseline=True,
      # More representations probed the same way, besides `features` and `pooled` (always probed:
      # the standard protocol reads it), e.g. ("last_stage",).
      extra_features=(),
      # The same probes and kNN on the untrained encoder (same architecture, seed and init): the
      # control every gain is measured against. Costs one more evaluation; off for big encoders.
      random_init=True,
      train_subset=0,      # > 0: probe on the first N training images only (smoke runs)
      # How extracted features are held on the host: bfloat16 halves the evaluation's largest
      # arrays (the quickstart's flattened map of 60k images: 1.4 GiB instead of 2.8); every fit,
      # kNN and logit is computed in float32 from them. float32 to store them exactly.
      feature_dtype="bfloat16",
  )
  c.knn = dict(k=200, temperature=0.1, features="pooled")
  # RankMe / LiDAR / collapse watch on held-out images (ssljax/evaluate/rank.py), a few seconds on
  # a CPU: RankMe's N images (>= the 256-d features, so the rank can reach D) and LiDAR's n
  # surrogate classes of q views each. The papers use far more (25.6k images; 1k x 50); these
  # rank runs against each other, not against the papers' absolute values.
  c.rank = dict(rankme_images=2048, lidar_images=256, lidar_views=8)
  # align/uniform and the flip/scale invariance (ssljax/evaluate/geometry.py): on the first N
  # held-out images.
  c.geometry = dict(images=2048)
  # Freeze vs fine-tune on another labelled dataset (ssljax/evaluate/transfer.py): one row per
  # number of frozen stages, plus from scratch. Images are resized to the pretraining input shape.
  c.transfer = dict(
      dataset="",          # "" = off; any dataset spec, e.g. digits or npz:PATH
      epochs=10, batch_size=128, weight_decay=1e-4,
      lr=1e-3,             # the new head's; unfrozen pretrained stages train at lr / 10
      features="",         # what the head reads; "" = probe.features
      train_subset=0,      # > 0: the first N training images only
      seed=0,
  )

  c.log_every = 50
  c.checkpoint_every = 500  # steps; a final checkpoint is always written
  c.keep_checkpoints = 2
  # A NaN/Inf loss or gradient norm is never applied; then "stop" (at the next log or checkpoint,
  # keeping the last good checkpoint) or "skip" the step and go on (counted in the report).
  c.nonfinite = "stop"
  c.wandb = dict(mode="auto", project="ssljax", entity="", name="", tags=())
  return c


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks any config to a run of a few seconds that still exercises every stage."""
  c.steps = 8
  c.batch_size = 32
  c.log_every = 2
  c.checkpoint_every = 4
  c.optimizer.warmup_steps = 2
  c.probe.epochs = 2
  c.probe.seeds = 2
  c.probe.lrs = (1e-3,)
  c.probe.weight_decays = (1e-4,)
  c.probe.train_subset = 2048
  c.knn.k = 20
  c.rank.update(rankme_images=128, lidar_images=16, lidar_views=4)
  c.geometry.images = 256
  c.transfer.epochs = 2
  c.transfer.train_subset = 512
  c.wandb.mode = "disabled"
  if c.encoder in c.encoders and "widths" in c.encoders[c.encoder]:
    c.encoders[c.encoder].widths = (8, 16)
  for section in c.encoders.values():  # every ViT, so --config.encoder=vit_* stays a smoke run
    if "heads" in section:
      section.update(dim=32, depth=2, heads=2)
  return c


def load_experiment(path, arg: str | None = None) -> ml_collections.ConfigDict:
  """``get_config(arg)`` of the experiment file at ``path`` (experiment files are not a package,
  hence loading by path), as ``--config=PATH:arg`` would."""
  import importlib.util
  import pathlib
  path = pathlib.Path(path)
  spec = importlib.util.spec_from_file_location(f"_experiment_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def sibling_experiment(this_file: str, name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """``get_config(arg)`` of ``<name>.py`` next to ``this_file``: a variant starts from the experiment
  it varies (``fmnist_infonce_flip`` from ``fmnist_infonce``), so the two differ only in what the
  variant overrides, however the original is tuned later."""
  import pathlib
  return load_experiment(pathlib.Path(this_file).resolve().parent / f"{name}.py", arg)


def quickstart_with_objective(this_file: str, objective: str, arg: str | None = None,
                              smoke_projector_dims=(64, 64, 64)) -> ml_collections.ConfigDict:
  """The quickstart (``fmnist_infonce.py`` next to ``this_file``) with only its objective changed,
  so the pair compares formulas on one encoder, views, budget and probe; the smoke run shrinks the
  objective's projector (seconds, not minutes: the smoke run's point)."""
  c = sibling_experiment(this_file, "fmnist_infonce", arg)
  c.objective = objective
  c.wandb.name = f"fmnist_{objective}"
  if "smoke" in parse_arg(arg):
    c.objectives[objective].projector_dims = tuple(smoke_projector_dims)
  return c


def parse_arg(arg: str | None) -> set[str]:
  """``get_config`` args are comma-separated words, e.g. ``smoke`` or ``smoke,flip``."""
  return {word.strip() for word in (arg or "").split(",") if word.strip()}
