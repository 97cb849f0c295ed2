"""Every figure the report holds, computed from a trained state: linear probe (and the raw-pixel
baseline under the same protocol), kNN, online probe, alignment/uniformity (encoder and projector),
the invariance probe and, when ``config.transfer.dataset`` is set, freeze-vs-fine-tune transfer.

``evaluate_and_report`` is the one path from a state to a written run directory, shared by
``python -m ssljax.pretrain`` (after training) and ``python -m ssljax.evaluate`` (from the
checkpoint), so the two can never disagree about what a report contains.
"""
from __future__ import annotations

import pathlib
import time

import numpy as np

from ssljax.evaluate.features import extract_features, online_probe_logits, variables_of
from ssljax.evaluate.geometry import align_uniform, embedding_fn, invariance
from ssljax.evaluate.knn import knn_accuracy
from ssljax.evaluate.linear_probe import linear_probe
from ssljax.evaluate.report import log_report, write_report
from ssljax.evaluate.transfer import run_transfer


def evaluate(exp, state) -> dict:
  """Returns the evaluation sections of ``report.json``; needs a labelled dataset for probes."""
  config, data, objective = exp.config, exp.dataset, exp.objective
  variables = variables_of(state)
  results: dict = {}
  t0 = time.perf_counter()
  embed = embedding_fn(objective)
  geometry = align_uniform(embed, variables, data.test_images, config.views)
  results["align"], results["uniform"] = geometry["encoder"]["align"], geometry["encoder"]["uniform"]
  if "projector" in geometry:
    results["projector"] = geometry["projector"]
  results["align_uniform_protocol"] = geometry["protocol"]
  results["invariance"] = invariance(embed, variables, data.test_images, config.views)

  transfer_cfg = config.get("transfer") or {}
  if transfer_cfg.get("dataset"):
    results["transfer"] = run_transfer(objective, variables, data.image_shape, config)

  if data.train_labels is None or data.test_labels is None:
    results["linear_probe"] = {"skipped": "the dataset has no labels"}
    results["eval_wall_s"] = time.perf_counter() - t0
    return results

  subset = int(config.probe.train_subset) or len(data.train_images)
  train_images, train_labels = data.train_images[:subset], data.train_labels[:subset]
  which = sorted({config.probe.features, config.knn.features})
  train_f = extract_features(objective, variables, train_images, exp.mesh, which, desc="train features")
  test_f = extract_features(objective, variables, data.test_images, exp.mesh, which, desc="test features")

  probe = linear_probe(train_f[config.probe.features], train_labels,
                       test_f[config.probe.features], data.test_labels, data.num_classes, config.probe)
  probe["features"] = config.probe.features
  results["linear_probe"] = probe

  if config.probe.raw_pixel_baseline:
    flat = lambda a: a.reshape(len(a), -1).astype(np.float32) / 255.0
    raw = linear_probe(flat(train_images), train_labels, flat(data.test_images), data.test_labels,
                       data.num_classes, config.probe)
    results["raw_pixel_probe"] = {k: raw[k] for k in ("top1", "top1_ci95", "val_top1", "chosen")}

  results["knn"] = knn_accuracy(train_f[config.knn.features], train_labels,
                                test_f[config.knn.features], data.test_labels, data.num_classes,
                                k=config.knn.k, temperature=config.knn.temperature)
  results["knn"]["features"] = config.knn.features

  if "online_probe" in state.params:
    logits = online_probe_logits(objective, variables, test_f[config.probe.features])
    top1 = float(np.mean(np.argmax(logits, -1) == data.test_labels))
    results["online_probe"] = {"top1": top1, "offline_minus_online": probe["top1"] - top1}
  results["eval_wall_s"] = time.perf_counter() - t0
  return results


def evaluate_and_report(exp, state, workdir: pathlib.Path, pretrain_summary: dict, writer,
                        is_main: bool = True) -> dict:
  """Evaluates ``state`` and (on the main process) writes report.json/.md and plots, logs them to
  W&B and sets the run summary a sweep optimises (``probe/top1``). Returns the report."""
  config = exp.config
  report = {"dataset": exp.dataset.name, "objective": config.objective, "encoder": config.encoder,
            "pretrain": pretrain_summary, **evaluate(exp, state)}
  if is_main:
    workdir = pathlib.Path(workdir)
    (workdir / "plots").mkdir(exist_ok=True)
    extra = exp.objective.save_plots(variables_of(state), workdir / "plots",
                                     exp.dataset.test_images[:16])
    write_report(workdir, report, extra)
    log_report(writer, report, workdir)
    probe = report.get("linear_probe", {})
    invariance_ = report.get("invariance", {})
    writer.summary({"probe/top1": probe.get("top1"), "probe/top1_ci95": probe.get("top1_ci95"),
                    "knn/top1": report.get("knn", {}).get("top1"),
                    "online_probe/top1": report.get("online_probe", {}).get("top1"),
                    "align": report.get("align"), "uniform": report.get("uniform"),
                    **{f"invariance/{k}": v["score"] for k, v in invariance_.items()
                       if isinstance(v, dict) and "score" in v}})
  return report
