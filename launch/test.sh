#!/usr/bin/env bash
# Installs what the tests need (virtualenv, ssljax[test], Fashion-MNIST) and runs the suite.
#   ./launch/test.sh [pytest args...]
set -euo pipefail
SSLJAX_EXTRAS=test
source "$(dirname "$0")/setup.sh"
ensure_venv
ensure_fashion_mnist
cd "$ROOT"
# Two workers: the suite is mostly XLA compilation, which is single-threaded per test. Whole files
# per worker (loadfile): a module fixture that pretrains is then built once, not once per worker.
# Files start in the order tests/conftest.py gives them (long subprocess files first).
exec "$VENV/bin/python" -m pytest -n 2 --dist loadfile --no-loadscope-reorder -q "$@"
