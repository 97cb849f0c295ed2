"""Every figure the report holds, computed from a trained state: linear probe (and the raw-pixel
baseline under the same protocol), kNN, online probe, alignment/uniformity."""
from __future__ import annotations

import time

import numpy as np

from ssljax.evaluate.features import extract_features, online_probe_logits, variables_of
from ssljax.evaluate.geometry import align_uniform
from ssljax.evaluate.knn import knn_accuracy
from ssljax.evaluate.linear_probe import linear_probe


def evaluate(exp, state) -> dict:
  """Returns the evaluation sections of ``report.json``; needs a labelled dataset for probes."""
  config, data, objective = exp.config, exp.dataset, exp.objective
  variables = variables_of(state)
  results: dict = {}
  t0 = time.perf_counter()
  geometry = align_uniform(objective, variables, data.test_images, config.views)
  results["align"], results["uniform"] = geometry.pop("align"), geometry.pop("uniform")
  results["align_uniform_protocol"] = geometry
  if data.train_labels is None or data.test_labels is None:
    results["linear_probe"] = {"skipped": "the dataset has no labels"}
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
