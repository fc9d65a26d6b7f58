#!/usr/bin/env bash
# Set up, then certify the bundled default (digits CNN, sigma = 0.25, digits test split),
# print the certified-accuracy table and write results/*.jsonl and a PNG plot.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/smoothcert certify "$@"
