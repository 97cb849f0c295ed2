"""The validation search behind the quickstart's defaults: pretrain variants, score them on the
probe's validation split only, and keep a log.

    python experiments/benchmarks/quickstart_search.py --variant base --variant jitter \
        [--set NAME=KEY=VALUE,KEY=VALUE ...] [--out runs/quickstart_search]

Each variant is ``experiments/fmnist_infonce.py`` with config overrides (``VARIANTS`` below, or
``--set``). Its pretraining is an ordinary run directory (resumable); the figures are computed on
a validation split carved from train with the linear probe's own split (seeded, ``val_fraction``):

- ``pooled_val``: linear probe on the pooled features, fit on the rest of train, top-1 on validation
  (the lr/wd grid's best, i.e. the figure that chooses the probe's hyperparameters);
- ``knn_val``: kNN (k, temperature of ``config.knn``) of each validation image among the fit
  images, on pooled features;
- ``map_val`` (with ``--map``): the same linear probe on the flattened final map.

``--curve 1,3,6`` also scores the checkpoints a run passes at those epochs (``curve`` in its line):
the learning curve of one longer run. ``--rescore OLD=NEW --curve ...`` scores a finished variant's
checkpoints again under today's probe settings (after the probe changes), without training.

The same figures of the untrained encoder of the variant's architecture and seed are computed too
(``random_*``), so every line says what pretraining added. The test split is never read. Results are
appended to ``OUT/results.jsonl``; a variant already there is skipped.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# name -> overrides of experiments/fmnist_infonce.py (dotted keys, Python literals).
VARIANTS: dict[str, dict] = {
    "base": {},
}


def parse_overrides(text: str) -> dict:
  import ast
  out = {}
  for item in filter(None, text.split(";")):
    key, _, value = item.partition("=")
    try:
      out[key.strip()] = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
      out[key.strip()] = value.strip()
  return out


def apply_overrides(config, overrides: dict) -> None:
  for key, value in overrides.items():
    *path, leaf = key.split(".")
    node = config
    for part in path:
      node = node[part]
    node[leaf] = value


def validation_figures(exp, variables, with_map: bool) -> dict:
  from ssljax.evaluate.features import extract_features
  from ssljax.evaluate.knn import knn_accuracy
  from ssljax.evaluate.linear_probe import linear_probe, validation_split
  config, data = exp.config, exp.dataset
  val_idx, fit_idx = validation_split(len(data.train_images), config.probe.val_fraction)
  labels = data.train_labels
  out = {}
  for name, key in (("pooled", "pooled_val"), ("last_stage", "map_val")):
    if name == "last_stage" and not with_map:
      continue
    # One representation at a time: a flattened final map of 60k images is gigabytes.
    feats = extract_features(exp.objective, variables, data.train_images, exp.mesh, [name])[name]
    # linear_probe's own validation split: its val_top1 never sees test (test arrays are a dummy).
    probe = linear_probe(feats, labels, feats[:2], labels[:2], data.num_classes, config.probe)
    out[key] = probe["val_top1"]
    out[key + "_chosen"] = probe["chosen"]
    if name == "pooled":
      knn = knn_accuracy(feats[fit_idx], labels[fit_idx], feats[val_idx], labels[val_idx],
                         data.num_classes, k=config.knn.k, temperature=config.knn.temperature)
      out["knn_val"] = knn["top1"]
    del feats
  return out


def run_variant(name: str, overrides: dict, out: pathlib.Path, with_map: bool,
                curve_epochs: tuple[float, ...] = (), run_name: str | None = None) -> dict:
  from ssljax.base_config import load_experiment
  from ssljax.evaluate.features import variables_of
  from ssljax.rundir import resolved_config, write_config
  from ssljax.tracking import MetricsWriter
  from ssljax.train.loop import build_experiment, initial_state, pretrain
  config = load_experiment(ROOT / "experiments" / "fmnist_infonce.py")
  apply_overrides(config, overrides)
  config.probe.seeds = 1
  config.probe.weight_decays = (1e-5,)  # made no difference on validation (1e-5 vs 1e-3)
  config.wandb.mode = "disabled"
  config.checkpoint_every = 10 ** 9
  config.keep_checkpoints = 1
  exp = build_experiment(config)
  # The learning curve: checkpoints at these epochs of the one run (its own cosine schedule, so an
  # early point understates a run annealed to that length), each scored like the final state.
  curve_steps = sorted({max(1, int(round(e * exp.stream.steps_per_epoch))) for e in curve_epochs}
                       & set(range(1, exp.total_steps)))
  if curve_steps:
    config.checkpoint_every = curve_steps[0] if len(curve_steps) == 1 else min(
        b - a for a, b in zip([0, *curve_steps], curve_steps))
    config.keep_checkpoints = 10 ** 6
    exp = build_experiment(config)
  workdir = out / (run_name or name)  # another variant's directory: scored again, not retrained
  workdir.mkdir(parents=True, exist_ok=True)
  write_config(workdir, resolved_config(config))  # so `python -m ssljax.evaluate` can read it
  writer = MetricsWriter(workdir, config.to_dict(), config.wandb, True)
  try:
    t0 = time.perf_counter()
    state, summary = pretrain(exp, workdir, writer)
    wall = time.perf_counter() - t0
  finally:
    writer.close()
  trained = validation_figures(exp, variables_of(state), with_map)
  untrained = validation_figures(exp, variables_of(initial_state(exp)), with_map)
  curve = []
  if curve_steps:
    from ssljax.train.checkpoint import Checkpoints
    checkpoints = Checkpoints(workdir / "checkpoints", keep=config.keep_checkpoints)
    try:
      for step in curve_steps:
        if (workdir / "checkpoints" / str(step)).exists():
          at = checkpoints.restore(initial_state(exp), step)
          curve.append({"step": step, "epochs": round(step / exp.stream.steps_per_epoch, 3),
                        **validation_figures(exp, variables_of(at), with_map)})
    finally:
      checkpoints.close()
  return {"variant": name, "overrides": overrides, "steps": exp.total_steps,
          "curve_steps_per_epoch": exp.stream.steps_per_epoch,
          "pretrain_wall_s": round(wall, 1), "images_per_s": summary["images_per_s"],
          "final_loss": summary["final_loss"], **trained,
          **{f"random_{k}": v for k, v in untrained.items()},
          **({"curve": curve} if curve else {})}


def plot_curve(result: dict, path: pathlib.Path) -> None:
  """The learning curve of one ``--curve`` variant: validation top-1 of the pooled probe and kNN
  against pretraining epochs (the final state the last point), the untrained encoder as lines."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  curve = result.get("curve", [])
  per_epoch = result.get("curve_steps_per_epoch") or curve[0]["step"] / curve[0]["epochs"]
  points = [*curve, {**result, "epochs": result["steps"] / per_epoch}]
  epochs = [0.0] + [p["epochs"] for p in points]
  fig, ax = plt.subplots(figsize=(6, 3.4))
  for key, label, colour in (("pooled_val", "linear probe, pooled", "C0"),
                             ("knn_val", "kNN (k=200), pooled", "C1")):
    untrained = result[f"random_{key}"]
    ax.plot(epochs, [untrained] + [p[key] for p in points], "o-", color=colour, label=label)
    ax.axhline(untrained, color=colour, ls=":", lw=1)
    ax.axhline(untrained + (0.04 if key == "pooled_val" else 0.05), color=colour, ls="--", lw=0.8)
  ax.set_xlabel("pretraining epochs (one run; its cosine schedule spans the last point)")
  ax.set_ylabel("validation top-1")
  ax.set_title(f"{result['variant']}: dotted = untrained encoder, dashed = the +4 / +5 goal",
               fontsize=9)
  ax.legend(fontsize=8, loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--variant", action="append", default=[], help="a name in VARIANTS")
  p.add_argument("--set", action="append", default=[],
                 help="NAME=KEY=VALUE;KEY=VALUE: a variant given on the command line")
  p.add_argument("--queue", default="",
                 help="a file of NAME=KEY=VALUE;... lines, re-read after every variant, so "
                      "variants can be added while the search runs")
  p.add_argument("--map", action="store_true", help="also probe the flattened final map")
  p.add_argument("--out", default="runs/quickstart_search")
  p.add_argument("--plot", default="", metavar="VARIANT=PATH",
                 help="draw the learning curve of a finished --curve variant to PATH and exit")
  p.add_argument("--rescore", default="", metavar="VARIANT=NEW",
                 help="score a finished variant's run directory again (its final state and --curve "
                      "checkpoints) under today's probe settings, logged as NEW; no training")
  p.add_argument("--curve", default="",
                 help="comma-separated epochs (e.g. 1,3,6): also score the run's checkpoints there")
  args = p.parse_args(argv)
  from ssljax.pretrain import use_cpu_cores
  from ssljax.base_config import base_config
  use_cpu_cores(base_config())
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  log = out / "results.jsonl"
  if args.plot:
    name, _, path = args.plot.partition("=")
    results = {json.loads(line)["variant"]: json.loads(line) for line in log.read_text().splitlines()}
    plot_curve(results[name], pathlib.Path(path))
    print(f"wrote {path}")
    return
  done = {json.loads(line)["variant"] for line in log.read_text().splitlines()} if log.exists() else set()
  def pending():
    specs = list(args.set)
    if args.queue and pathlib.Path(args.queue).exists():
      specs += [line.strip() for line in pathlib.Path(args.queue).read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    todo = [(v, VARIANTS[v]) for v in args.variant]
    for spec in specs:
      name, _, rest = spec.partition("=")
      todo.append((name, parse_overrides(rest)))
    return [(name, overrides) for name, overrides in todo if name not in done]

  if args.rescore:
    # A finished variant's checkpoints scored again under today's probe settings: its run
    # directory already holds the final state, so pretraining resumes there and does no step.
    old_name, _, new_name = args.rescore.partition("=")
    results = {json.loads(line)["variant"]: json.loads(line) for line in log.read_text().splitlines()}
    old = results[old_name]
    curve = tuple(float(e) for e in args.curve.split(",") if e)
    result = run_variant(new_name, old["overrides"], out, args.map, curve, run_name=old_name)
    result.update(rescored_from=old_name, pretrain_wall_s=old["pretrain_wall_s"],
                  images_per_s=old["images_per_s"])
    with log.open("a") as f:
      f.write(json.dumps(result) + "\n")
    print(json.dumps(result), flush=True)
    return

  while pending():
    name, overrides = pending()[0]
    curve = tuple(float(e) for e in args.curve.split(",") if e)
    result = run_variant(name, overrides, out, args.map, curve)
    with log.open("a") as f:
      f.write(json.dumps(result) + "\n")
    done.add(name)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
  from ssljax.host_memory import reexec_with_tuned_malloc
  reexec_with_tuned_malloc()
  main()
