#!/usr/bin/env bash
# Sourced by the other launch scripts: makes .venv with ssljax installed (extras in $SSLJAX_EXTRAS,
# plus the accelerator's: cuda on an NVIDIA GPU, tpu on a TPU VM, detected by ssljax/accelerator.py
# or forced with SSLJAX_ACCELERATOR=cpu|cuda|tpu) and makes sure the embedded Fashion-MNIST is on
# the machine. SSLJAX_DRY_RUN=1: print what would be installed and install nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SSLJAX_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
FMNIST_DIR="${SSLJAX_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"

# Sets ACCELERATOR (cpu | cuda | tpu) and ACCELERATOR_EXTRA ("" on the CPU). The detection is one
# Python module run with the system interpreter (nothing of ssljax's dependencies is needed), so
# the shell and the library's warning never disagree about what the machine has.
detect_accelerator() {
  local out
  out="$(PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m ssljax.accelerator)" || return 1
  ACCELERATOR="${out%% *}"
  ACCELERATOR_EXTRA="${out#* }"
  if [ "$ACCELERATOR_EXTRA" = "-" ]; then ACCELERATOR_EXTRA=""; fi
  if [ "${SSLJAX_ACCELERATOR:-}" = cpu ] && [ -z "${JAX_PLATFORMS:-}" ]; then
    export JAX_PLATFORMS=cpu  # forced: an accelerator plugin installed earlier must not take over
  fi
}

ensure_venv() {
  detect_accelerator || return 1  # an invalid SSLJAX_ACCELERATOR: its one-line error is out
  local extras="${SSLJAX_EXTRAS:-}"
  if [ -n "$ACCELERATOR_EXTRA" ]; then extras="${extras:+$extras,}$ACCELERATOR_EXTRA"; fi
  if [ "${SSLJAX_DRY_RUN:-0}" = 1 ]; then
    echo "[setup] accelerator=$ACCELERATOR would install: ssljax${extras:+[$extras]} into $VENV"
    return 0
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.ssljax-installed-${extras:-none}"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "[setup] installing ssljax${extras:+[$extras]} and its dependencies (accelerator: $ACCELERATOR)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT${extras:+[$extras]}"
    touch "$stamp"
  fi
}

ensure_fashion_mnist() {
  if [ -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then return 0; fi
  if [ "${SSLJAX_DRY_RUN:-0}" = 1 ]; then
    echo "[setup] would install Fashion-MNIST (apt-get install dataset-fashion-mnist)"
    return 0
  fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; fi
  fi
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; }; then
    echo "[setup] installing Fashion-MNIST: apt-get install dataset-fashion-mnist"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
  fi
  if [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
    echo "[setup] Fashion-MNIST is missing and could not be installed automatically." >&2
    echo "        On Debian/Ubuntu run: sudo apt-get install dataset-fashion-mnist" >&2
    echo "        Elsewhere: download the four IDX .gz files of Fashion-MNIST into a directory and" >&2
    echo "        export SSLJAX_FASHION_MNIST_DIR=/that/directory" >&2
    return 1
  fi
}
