#!/usr/bin/env bash
# The one-shot check of a GPU/TPU machine (a few minutes on one H100-class GPU, mostly
# compilation; shrunk on a CPU: 3 minutes on 2 loaded cores): device and versions, ResNet-18
# InfoNCE throughput and MFU in bf16, the quickstart CNN's, 1 vs N devices, a pretrain + probe
# smoke, kill -9 and resume. Nothing to edit:
#   ./experiments/benchmarks/accelerator_check.sh
# Runs $PYTHON if set, else the .venv that launch/setup.sh makes (e.g. via ./launch/test.sh),
# else python3. Last line: accelerator_check ok=<bool> resnet18_views_per_s=<float> mfu=<float>
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
if [ ! -x "$PY" ] && ! command -v "$PY" >/dev/null 2>&1; then PY=python3; fi
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" experiments/benchmarks/accelerator_check.py "$@"
