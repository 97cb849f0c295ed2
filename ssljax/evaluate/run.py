"""Every figure the report holds, computed from a trained state: linear probe (and the raw-pixel
baseline under the same protocol; the EMA teacher's, for objectives with one), kNN, online probe,
alignment/uniformity (encoder and projector), RankMe, LiDAR and the collapse watch, the invariance
probe and, when ``config.transfer.dataset`` is set, freeze-vs-fine-tune transfer. Every figure but
the teacher probe reads the online (student) encoder.

``evaluate_and_report`` is the one path from a state to a written run directory, shared by
``python -m ssljax.pretrain`` (after training) and ``python -m ssljax.evaluate`` (from the
checkpoint), so the two can never disagree about what a report contains.
"""
from __future__ import annotations

import pathlib
import time

import jax
import numpy as np

from ssljax.evaluate.features import extract_features, storage_dtype, variables_of
from ssljax.evaluate.figures import wandb_summary
from ssljax.evaluate.geometry import align_uniform, embedding_fn, invariance
from ssljax.evaluate.knn import knn_report
from ssljax.evaluate.linear_probe import linear_probe
from ssljax.evaluate.rank import rank_report
from ssljax.evaluate.report import log_report, save_image_grid, write_report
from ssljax.evaluate.transfer import run_transfer
from ssljax.host_memory import return_free_memory
from ssljax.objectives.base import init_keys
from ssljax.objectives.online_probe import init_variables
from ssljax.provenance import provenance


def probed_features(config) -> list[str]:
  """The representations the linear probe reads: ``probe.features`` (the headline) first, then
  ``probe.extra_features``, and ``pooled`` always (the standard protocol's)."""
  names = [config.probe.features, *config.probe.get("extra_features", ()), "pooled"]
  return list(dict.fromkeys(names))


def probe_figures(exp, variables, train_images, train_labels, extra=()) -> tuple[dict, dict]:
  """(report sections ``linear_probe`` (headline features), ``linear_probes`` (every probed
  representation) and ``knn``, the test features) of the encoder with ``variables``. Every
  representation comes out of one pass over each split (the forward pass is the cost, not the
  pooled copies); a train representation is dropped as soon as it has been probed."""
  config, data = exp.config, exp.dataset
  features = lambda images, names, split: extract_features(
      exp.objective, variables, images, exp.mesh, names, desc=f"{split} features",
      dtype=storage_dtype(config.probe))
  probed = probed_features(config)
  needed = list(dict.fromkeys([*probed, config.knn.features]))
  train_all = features(train_images, needed, "train")
  test_all = features(data.test_images, list(dict.fromkeys([*needed, *extra])), "test")
  probes = {}
  for name in needed:
    train_f, test_f = train_all.pop(name), test_all[name]
    if name in probed:
      probes[name] = {**linear_probe(train_f, train_labels, test_f, data.test_labels,
                                     data.num_classes, config.probe, desc=f"probe {name}"),
                      "features": name}
    if name == config.knn.features:
      knn = {**knn_report(train_f, train_labels, test_f, data.test_labels, data.num_classes,
                          config.knn.k, config.knn.temperature, config.probe.val_fraction),
             "features": name}
    del train_f, test_f
    if name not in extra:
      del test_all[name]
    return_free_memory()  # before the next representation's arrays are allocated
  sections = {"linear_probe": probes[config.probe.features],
              "linear_probes": {name: {k: p[k] for k in SUMMARY_KEYS if k in p}
                                for name, p in probes.items()},
              "knn": knn}
  return sections, test_all


SUMMARY_KEYS = ("top1", "top1_ci95", "val_top1", "chosen", "seeds", "feature_dim", "features")


def teacher_probe(exp, variables, train_images, train_labels) -> dict | None:
  """The report's ``teacher_probe``: the headline linear probe, same protocol, of the objective's
  EMA teacher (``Objective.teacher_variables``: BYOL's target, MoCo's momentum encoder, DINO's
  teacher, which its paper evaluates); None for an objective without one."""
  teacher = exp.objective.teacher_variables(variables)
  if teacher is None:
    return None
  config, data, name = exp.config, exp.dataset, exp.config.probe.features
  features = lambda images, split: extract_features(
      exp.objective, teacher, images, exp.mesh, (name,), desc=f"teacher {split} features",
      dtype=storage_dtype(config.probe))[name]
  probe = linear_probe(features(train_images, "train"), train_labels,
                       features(data.test_images, "test"), data.test_labels, data.num_classes,
                       config.probe)
  return {k: probe[k] for k in SUMMARY_KEYS if k in probe} | {"features": name}


def untrained_variables(exp) -> dict:
  """The encoder (and heads) exactly as the run initialised them, before any training: the same
  architecture, seed and initialisation key as the run's first state."""
  sample = jax.numpy.zeros((2, *exp.dataset.image_shape), jax.numpy.float32)
  return jax.jit(lambda: init_variables(exp.objective, exp.probe, init_keys(exp.config.seed)[0],
                                        sample))()


def gains(trained: dict, untrained: dict) -> dict:
  """What pretraining added over the untrained encoder, per figure (test and validation top-1)."""
  diff = lambda a, b, key: None if a.get(key) is None or b.get(key) is None else a[key] - b[key]
  return {
      "linear_probe": diff(trained["linear_probe"], untrained["linear_probe"], "top1"),
      "linear_probe_val": diff(trained["linear_probe"], untrained["linear_probe"], "val_top1"),
      "knn": diff(trained["knn"], untrained["knn"], "top1"),
      "knn_val": diff(trained["knn"], untrained["knn"], "val_top1"),
      "linear_probes": {name: diff(p, untrained["linear_probes"][name], "top1")
                        for name, p in trained["linear_probes"].items()},
  }


def evaluate(exp, state) -> dict:
  """Returns the evaluation sections of ``report.json``; needs a labelled dataset for probes."""
  config, data, objective = exp.config, exp.dataset, exp.objective
  variables = variables_of(state)
  return_free_memory()  # what pretraining's steps freed (ssljax/host_memory.py)
  results: dict = {}
  t0 = time.perf_counter()
  seconds: dict[str, float] = {}  # where the evaluation's wall time went, section by section

  def lap(section: str) -> None:
    seconds[section] = round(time.perf_counter() - t0 - sum(seconds.values()), 1)

  embed = embedding_fn(objective)
  held_out = data.test_images[:config.geometry.images]
  geometry = align_uniform(embed, variables, held_out, config.views)
  results["align"], results["uniform"] = geometry["encoder"]["align"], geometry["encoder"]["uniform"]
  if "projector" in geometry:
    results["projector"] = geometry["projector"]
  results["align_uniform_protocol"] = geometry["protocol"]
  results["invariance"] = invariance(embed, variables, held_out, config.views)
  # LiDAR's surrogate classes are views under the run's own invariances (flip + scale for the
  # objectives that have none, as the geometry figures use).
  run_invariances = objective.args.get("invariances") or ("flip", "scale")
  results.update(rank_report(embed, variables, data.test_images, config.views, run_invariances,
                             config.rank))
  lap("geometry")

  transfer_cfg = config.get("transfer") or {}
  if transfer_cfg.get("dataset"):
    results["transfer"] = run_transfer(objective, variables, data.image_shape, config)
    lap("transfer")

  if data.train_labels is None or data.test_labels is None:
    results["linear_probe"] = {"skipped": "the dataset has no labels"}
    results["eval_wall_s"] = time.perf_counter() - t0
    return results

  subset = int(config.probe.train_subset) or len(data.train_images)
  train_images, train_labels = data.train_images[:subset], data.train_labels[:subset]
  trained, test_f = probe_figures(exp, variables, train_images, train_labels,
                                  extra=(config.get("online_probe_features", "pooled"),))
  results.update(trained)
  lap("probes")
  teacher = teacher_probe(exp, variables, train_images, train_labels)
  if teacher is not None:
    results["teacher_probe"] = teacher
    lap("teacher_probe")

  if config.probe.raw_pixel_baseline:
    flat = lambda a: a.reshape(len(a), -1).astype(np.float32) / 255.0
    raw = linear_probe(flat(train_images), train_labels, flat(data.test_images), data.test_labels,
                       data.num_classes, config.probe, desc="probe raw pixels")
    results["raw_pixel_probe"] = {k: raw[k] for k in ("top1", "top1_ci95", "val_top1", "chosen")}
    lap("raw_pixel_probe")

  if exp.probe is not None and "online_probe" in state.params:
    top1 = exp.probe.top1(state.params, test_f[config.get("online_probe_features", "pooled")],
                          data.test_labels)
    results["online_probe"] = {"top1": top1, "features": config.get("online_probe_features", "pooled"),
                               "offline_minus_online": results["linear_probe"]["top1"] - top1}
  del test_f
  if config.probe.get("random_init", True):
    untrained, _ = probe_figures(exp, untrained_variables(exp), train_images, train_labels)
    results["random_init"] = untrained
    results["gain"] = gains(trained, untrained)
    lap("random_init")
  results["eval_wall_s"] = time.perf_counter() - t0
  results["eval_seconds"] = seconds
  return results


def save_objective_plots(objective, variables: dict, plots_dir: pathlib.Path, images) -> list[str]:
  """Draws the objective's own figures (``Objective.image_grids``) into ``plots_dir``; returns
  their file names."""
  grids = objective.image_grids(variables, images)
  for name, (rows, title) in grids.items():
    save_image_grid(plots_dir / name, rows, title)
  return list(grids)


def evaluate_and_report(exp, state, workdir: pathlib.Path, pretrain_summary: dict, writer,
                        is_main: bool = True) -> dict:
  """Evaluates ``state`` and (on the main process) writes report.json/.md and plots, logs them to
  W&B and sets the run summary a sweep optimises (``probe/top1``). Returns the report, whose
  ``provenance`` is this invocation's (the evaluation's: from a checkpoint it may differ from the
  pretraining's, which config.json keeps)."""
  config = exp.config
  report = {"dataset": exp.dataset.name, "objective": config.objective, "encoder": config.encoder,
            "pretrain": pretrain_summary, **evaluate(exp, state), "provenance": provenance()}
  if is_main:
    workdir = pathlib.Path(workdir)
    (workdir / "plots").mkdir(exist_ok=True)
    extra = save_objective_plots(exp.objective, variables_of(state), workdir / "plots",
                                 exp.dataset.test_images[:16])
    write_report(workdir, report, extra)
    log_report(writer, report, workdir)
    writer.summary(wandb_summary(report))  # probe/top1 ...: what a sweep optimises
  return report
