#!/usr/bin/env bash
# The flower mode's peer figures, before (run_simulation in a driver process) and after
# (flwr run against a private local SuperLink): cold start, steady round and peak PSS of
# flower beside multi-gpu and ray, each engine in one scripts/measure_memory.py run, twice.
# Run on a quiet machine from the repository root:  bash scripts/measure-flower.sh [OUT_DIR]
set -euo pipefail
BEFORE=${BEFORE:-c57ae40}  # the last commit whose flower mode calls run_simulation
OUT=${1:-/tmp/gpubench-flower-figures}
PY=${PYTHON:-python}
ARGS=(--clients 10 --batch-size 128 --devices cpu:2 --modes serial,multi-gpu,ray,flower)
export FLWR_DISABLE_UPDATE_CHECK=1 FLWR_TELEMETRY_ENABLED=0
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
mkdir -p "$OUT"
before_tree=$(mktemp -d)
git worktree add --detach "$before_tree" "$BEFORE" >/dev/null
trap 'git worktree remove --force "$before_tree"' EXIT
for run in 1 2; do
  (cd "$before_tree" && PYTHONPATH=$PWD "$PY" scripts/measure_memory.py "${ARGS[@]}" \
    --out "$OUT/before-run_simulation-$run.json") | tee "$OUT/before-run_simulation-$run.txt"
  PYTHONPATH=$PWD "$PY" scripts/measure_memory.py "${ARGS[@]}" \
    --out "$OUT/after-flwr-run-$run.json" | tee "$OUT/after-flwr-run-$run.txt"
done
# The Flower rows of the clients-per-device sweep, with the new engine.
PYTHONPATH=$PWD "$PY" -m gpubench sweep --workers-per-device 1,2,4 --modes multi-gpu,ray,flower \
  --devices cpu:2 --clients 8 --out-dir "$OUT/sweep-flwr-run" | tee "$OUT/sweep-flwr-run.txt"
echo "figures in $OUT (cold start, round median and peak PSS per mode in the .txt tables)"
