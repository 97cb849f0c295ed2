#!/usr/bin/env bash
# The main job: pretrain the small CNN with InfoNCE on Fashion-MNIST, linear-probe it, write the report.
#   ./launch/quickstart.sh [WORKDIR] [--config.key=value ...]
# Rerunning with the same WORKDIR resumes from the latest checkpoint.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
WORKDIR="${1:-runs/quickstart}"
shift || true
ensure_venv
ensure_fashion_mnist
cd "$ROOT"
"$VENV/bin/python" -m ssljax.pretrain --config=experiments/fmnist_infonce.py --workdir="$WORKDIR" "$@"
echo "Done. Open $WORKDIR/report.md (figures in $WORKDIR/report.json, plots in $WORKDIR/plots/)."
