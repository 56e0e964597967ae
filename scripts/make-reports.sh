#!/usr/bin/env bash
# Regenerate the committed CPU-slot reports (en and zh) from one fresh comparison:
#   bash scripts/make-reports.sh
# Run it on a quiet machine: other load on the cores shows up in the CPU-slot numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=reports/cpu-slots
mkdir -p "$dir"
gpubench compare --devices cpu:2 --clients 10 --batch-size 128 --rounds 8 --interleave --quiet \
  --out "$dir/compare.json" --report "$dir/compare.en.md" --lang en
gpubench report "$dir/compare.json" -o "$dir/compare.zh.md" --lang zh
# The vectorized mode on one slot of both cores, on the small MLP.
gpubench compare --case mlp --modes serial,vectorized --devices cpu:1 --clients 10 --batch-size 64 \
  --rounds 20 --interleave --quiet \
  --out "$dir/vectorized-mlp.json" --report "$dir/vectorized-mlp.en.md" --lang en
gpubench report "$dir/vectorized-mlp.json" -o "$dir/vectorized-mlp.zh.md" --lang zh
