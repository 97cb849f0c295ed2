"""How many epochs the linear probe needs: the probe's lr/wd grid trained for several epoch counts
on the features of a finished run (and of its untrained encoder), scored on the probe's own
validation split only, with the wall time of each grid fit.

    python experiments/benchmarks/probe_epochs.py --workdir=runs/infonce [--epochs 5,10,15,30] \
        [--features pooled,last_stage] [--lrs 1e-3,3e-3,1e-2]

The probe's epochs are the bulk of an evaluation's time (the flattened map of the quickstart is
12,544-d), and fewer epochs are only worth it if the validation top-1 the grid chooses by does not
move: this prints, per representation and encoder, the best validation top-1 of the grid and its
setting at each epoch count, beside the seconds the grid took (the report's own
``validation_grid``; its compile, a few seconds, included). The test split is never read. Last line per (encoder,
representation): ``probe_epochs encoder=... features=... epochs=... val_top1=... grid_s=...``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def grid_validation(features, labels, probe_config, num_classes: int, epochs: int) -> dict:
  """The probe's grid at ``epochs`` (the report's own ``validation_grid``): the best validation
  top-1, its setting and the seconds the grid took, its validation logits included."""
  import jax.numpy as jnp
  from ssljax.evaluate import linear_probe as lp
  cfg = probe_config.copy_and_resolve_references()
  cfg.epochs = epochs
  t0 = time.perf_counter()
  grid = lp.validation_grid(features, labels, lp.device_features(features), jnp.asarray(labels),
                            num_classes, cfg)
  seconds = time.perf_counter() - t0
  best = max(grid, key=lambda g: g["val_top1"])
  return {"epochs": epochs, "val_top1": best["val_top1"], "lr": best["lr"], "wd": best["wd"],
          "grid_s": round(seconds, 1)}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", required=True, help="a finished run directory")
  p.add_argument("--epochs", default="5,10,15,30")
  p.add_argument("--features", default="pooled,last_stage")
  p.add_argument("--lrs", default="", help="the grid's learning rates (default: the run's probe.lrs)")
  p.add_argument("--no-untrained", dest="untrained", action="store_false",
                 help="skip the untrained encoder")
  args = p.parse_args(argv)
  from ssljax.evaluate.features import extract_features, storage_dtype, variables_of
  from ssljax.evaluate.from_checkpoint import restore_latest
  from ssljax.evaluate.run import untrained_variables
  from ssljax.rundir import load_run_config
  from ssljax.train.loop import build_experiment

  workdir = pathlib.Path(args.workdir)
  overrides = {"probe.lrs": tuple(float(x) for x in args.lrs.split(","))} if args.lrs else {}
  config, _ = load_run_config(workdir, overrides)
  exp = build_experiment(config)
  encoders = {"trained": variables_of(restore_latest(exp, workdir))}
  if args.untrained:
    encoders["untrained"] = untrained_variables(exp)
  epoch_counts = [int(e) for e in args.epochs.split(",")]
  data, results = exp.dataset, []
  for (encoder, variables), name in itertools.product(encoders.items(),
                                                      args.features.split(",")):
    features = extract_features(exp.objective, variables, data.train_images, exp.mesh, [name],
                                desc=f"{encoder} {name}", dtype=storage_dtype(config.probe))[name]
    for epochs in epoch_counts:
      row = {"encoder": encoder, "features": name,
             **grid_validation(features, data.train_labels, config.probe, data.num_classes,
                               epochs)}
      results.append(row)
      print(f"probe_epochs encoder={encoder} features={name} epochs={epochs} "
            f"val_top1={row['val_top1']:.4f} lr={row['lr']:g} wd={row['wd']:g} "
            f"grid_s={row['grid_s']}", flush=True)
    del features
  print(json.dumps(results))


if __name__ == "__main__":
  main()
