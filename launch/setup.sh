#!/usr/bin/env bash
# Sourced by the other launch scripts: makes .venv with ssljax installed (extras in $SSLJAX_EXTRAS)
# and makes sure the embedded Fashion-MNIST is on the machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SSLJAX_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
FMNIST_DIR="${SSLJAX_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.ssljax-installed-${SSLJAX_EXTRAS:-none}"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "[setup] installing ssljax${SSLJAX_EXTRAS:+[$SSLJAX_EXTRAS]} and its dependencies"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT${SSLJAX_EXTRAS:+[$SSLJAX_EXTRAS]}"
    touch "$stamp"
  fi
}

ensure_fashion_mnist() {
  if [ -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then return 0; fi
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
