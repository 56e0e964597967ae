#!/usr/bin/env bash
# Every committed CPU-slot page, measured again and written from its results, en and zh:
#
#   bash scripts/make-evidence.sh
#
# 1. measures: the own-client runs (scripts/make-own-client-report.sh), the clients-per-device
#    sweeps (scripts/clients-per-device.sh), the CPU-slot comparison, the vectorized MLP and
#    the CPU-slot FAQ's plan (scripts/make-reports.sh --measure), and flower beside multi-gpu
#    and ray with every process's PSS (scripts/measure_memory.py);
# 2. refuses, with exit status 1 and before writing any page, when a measured mode of any of
#    those results files ran beside more than 10% other programs' load on one of its devices
#    (scripts/quiet_check.py names the file, the mode and the device; `git checkout reports
#    docs` puts the committed files back);
# 3. writes every page, the traces, the README tables and the plots from the results
#    (scripts/make-reports.sh --render).
#
# Run it with nothing else running on the machine (no tests, no second benchmark): about 25
# minutes on two cores. The GPU pages are rendered from their committed JSON only.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 0 ] || { echo "usage: bash scripts/make-evidence.sh" >&2; exit 2; }
python=${PYTHON:-python}
started=$(date +%s)
bash scripts/make-own-client-report.sh --measure
bash scripts/clients-per-device.sh
bash scripts/make-reports.sh --measure
# Flower beside the pools and Ray: cold start, round and every process's PSS, in one run.
"$python" scripts/measure_memory.py --clients 10 --batch-size 128 --devices cpu:2 \
  --modes serial,multi-gpu,ray,flower --out reports/cpu-slots/flower-peer.json
if ! "$python" scripts/quiet_check.py reports/cpu-slots reports/cpu-own-client \
    docs/faq/cpu-slots/results; then
  echo "make-evidence: refused: a run was disturbed by other programs (above); no page was" \
    "written. Run it again on a quiet machine." >&2
  exit 1
fi
bash scripts/make-reports.sh --render
echo "make-evidence: done in $(( $(date +%s) - started )) s"
