#!/usr/bin/env bash
# A sweep from a W&B sweep YAML (experiments/sweeps/*.yaml): creates the W&B sweep and starts an
# agent here on the venv's Python (its runs' `python` is that one too, activated or not); without
# W&B (no API key, WANDB_MODE=offline) it says so and runs the sweep locally (method grid: the grid;
# random: --count seeded draws; bayes needs W&B), one run directory each under runs/sweeps/NAME/,
# then the comparison report. Logic: ssljax/sweep.py.
#   ./launch/sweep.sh SWEEP.yaml [--count=N] [--seed=S] [--local] [--dry_run] [-- --config.key=value ...]
# Flags after `--` go to every run, e.g. a smaller budget: -- --config.epochs=1
set -euo pipefail
source "$(dirname "$0")/setup.sh"
if [ -z "${SSLJAX_PYTHON:-}" ]; then
  ensure_venv
  ensure_fashion_mnist
  SSLJAX_PYTHON="$VENV/bin/python"
fi
cd "$ROOT"
exec "$SSLJAX_PYTHON" -m ssljax.sweep "$@"
