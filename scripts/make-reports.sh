#!/usr/bin/env bash
# The committed pages, en and zh.
#
#   bash scripts/make-reports.sh            # measure the CPU-slot runs again, then write every page
#   bash scripts/make-reports.sh --render   # only write every page from the committed JSON
#   bash scripts/make-reports.sh --measure  # only measure (scripts/make-evidence.sh checks the
#                                           # runs' other load between the two)
#
# Measuring: the CPU-slot comparison (reports/cpu-slots/compare.json), the vectorized MLP
# (reports/cpu-slots/vectorized-mlp.json) and the CPU-slot FAQ (docs/faq/cpu-slots/results/),
# every comparison with the modes interleaved round by round (the FAQ's memory run alone is
# not: each mode's processes must be the only ones alive while it is sampled). Run it on a
# quiet machine: other load on the cores shows up in the CPU-slot numbers. About 6 minutes on
# two cores. The GPU pages (reports/gpu-h200, docs/faq/gpu-h200) and the own-client page
# (scripts/make-own-client-report.sh) are only rendered here, from their committed JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
render_only=0
measure_only=0
case "${1:-}" in
  --render) render_only=1 ;;
  --measure) measure_only=1 ;;
  "") ;;
  *) echo "usage: bash scripts/make-reports.sh [--render|--measure]" >&2; exit 2 ;;
esac

cpu=reports/cpu-slots
faq_cpu=docs/faq/cpu-slots
if [ "$render_only" = 0 ]; then
  mkdir -p "$cpu"
  gpubench compare --devices cpu:2 --clients 10 --batch-size 128 --rounds 8 --interleave --quiet \
    --out "$cpu/compare.json"
  # The vectorized mode on one slot of both cores, on the small MLP.
  gpubench compare --case mlp --modes serial,vectorized --devices cpu:1 --clients 10 \
    --batch-size 64 --rounds 20 --interleave --quiet --out "$cpu/vectorized-mlp.json"
  # The FAQ's own plan: an interleaved comparison, the memory run, the batch sweep.
  # (results/clients/ holds the clients-per-device sweeps: scripts/clients-per-device.sh)
  rm -rf "$faq_cpu/results/sweep" "$faq_cpu"/results/*.json
  gpubench faq --out "$faq_cpu" --devices cpu:2 --lang both --quiet
fi
[ "$measure_only" = 1 ] && exit 0

# The comparison's timeline beside it (the page links it): ui.perfetto.dev opens it.
gpubench trace "$cpu/compare.json" -o "$cpu/compare.trace.json"
for lang in en zh; do
  gpubench report "$cpu/compare.json" -o "$cpu/compare.$lang.md" --lang "$lang"
  gpubench report "$cpu/vectorized-mlp.json" -o "$cpu/vectorized-mlp.$lang.md" --lang "$lang"
  gpu=reports/gpu-h200
  gpubench report "$gpu/compare.json" -o "$gpu/compare.$lang.md" --lang "$lang"
  gpubench report "$gpu/compare-one-gpu.json" -o "$gpu/one-gpu.$lang.md" --lang "$lang"
  gpubench report "$gpu/compare-all.json" -o "$gpu/all-modes.$lang.md" --lang "$lang"
  own=reports/cpu-own-client
  gpubench report "$own"/idealised-cpu2.json "$own"/flower-like-cpu2.json \
    "$own"/example-app-cpu2.json "$own"/idealised-cpu1.json "$own"/flower-like-cpu1.json \
    "$own"/example-app-cpu1.json -o "$own/own-client.$lang.md" --lang "$lang"
done
# The clients-per-device section, from each committed workers-per-device sweep.
clients=()
for dir in "$faq_cpu"/results/clients/*/; do
  [ -f "$dir/summary.json" ] && clients+=(--clients-sweep "${dir%/}")
done
gpubench faq --out "$faq_cpu" --from "$faq_cpu"/results/*.json "$faq_cpu"/results/sweep/*.json \
  "${clients[@]}"
gpubench faq --out docs/faq/gpu-h200 --from reports/gpu-h200/compare-all.json \
  reports/gpu-h200/sweep/*.json
python scripts/readme_table.py
