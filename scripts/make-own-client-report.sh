#!/usr/bin/env bash
# The own-client report (en and zh) on CPU slots: the idealised client, `--preset flower-like`
# and the example Flower app, each on two 1-core slots and on one slot of both cores, with
# threaded, multiprocess and multi-gpu against serial and, where threads lose, the measured
# counterfactual (threaded again with one torch thread per worker):
#   bash scripts/make-own-client-report.sh [--measure] [DIR]   (--measure: no pages)
# Run it on a quiet machine: other load on the cores shows up in the CPU-slot numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
measure_only=0
if [ "${1:-}" = --measure ]; then measure_only=1; shift; fi
dir=${1:-reports/cpu-own-client}
mkdir -p "$dir"
modes=serial,threaded,multiprocess,multi-gpu
common=(--clients 6 --rounds 3 --warmup 1 --interleave --quiet)
app=(--case flower:examples/flower-quickstart/app.py:app
     --initial-model examples/flower-quickstart/task.py:Net
     --run-config "batch-size=32 local-epochs=1 dataset-size=1200" --train-config "lr=0.01")
for slots in cpu:2 cpu:1; do
  tag=${slots/:/}
  gpubench compare --devices "$slots" --modes "$modes" "${common[@]}" --batch-size 32 \
    --samples-per-client 160 --out "$dir/idealised-$tag.json"
  gpubench compare --devices "$slots" --modes "$modes" "${common[@]}" --batch-size 32 \
    --samples-per-client 160 --preset flower-like --out "$dir/flower-like-$tag.json"
  gpubench compare --devices "$slots" --modes "$modes" "${common[@]}" "${app[@]}" \
    --out "$dir/example-app-$tag.json"
done
[ "$measure_only" = 1 ] && exit 0
for lang in en zh; do
  gpubench report "$dir"/idealised-cpu2.json "$dir"/flower-like-cpu2.json \
    "$dir"/example-app-cpu2.json "$dir"/idealised-cpu1.json "$dir"/flower-like-cpu1.json \
    "$dir"/example-app-cpu1.json -o "$dir/own-client.$lang.md" --lang "$lang"
done
