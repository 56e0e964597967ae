#!/usr/bin/env bash
# Eight runs of the same commit on two CPU slots, added to a fresh history store, then
# checked (expected: exit 0, no change point) and plotted:
#   bash scripts/history-series.sh [DIR]
# Run it on a quiet machine: each run trains for real (a few minutes in all on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-reports/history-series}
mkdir -p "$dir"
store="$dir/history.jsonl"
rm -f "$store" "$store.lock"
for n in 1 2 3 4 5 6 7 8; do
  gpubench compare --devices cpu:2 --rounds 3 --quiet --out "$dir/run-$n.json"
done
gpubench history add "$dir"/run-*.json --store "$store"
status=0
gpubench history check --store "$store" | tee "$dir/check.txt" || status=$?
gpubench history export --store "$store" --format otava-csv -o "$dir/series.csv"
gpubench history plot --store "$store" -o "$dir/history.png"
exit "$status"
