#!/usr/bin/env bash
# Set up, then run lint, type checks, the fast test suite and the slow statistical checks.
# --dist loadfile keeps each test file on one worker (one Ray cluster per Ray test file).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_data.sh   # Fashion-MNIST files: the fashion_mnist tests read the real data
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/ruff format --check src tests benchmarks examples
.venv/bin/mypy
.venv/bin/python -m pytest -q -n 2 --dist loadfile
# Slow statistical checks (Monte Carlo coverage); exit code 5 means none are selected.
set +e
.venv/bin/python -m pytest -q -n 2 --dist loadfile -m slow
status=$?
set -e
if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then exit "$status"; fi
