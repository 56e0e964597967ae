#!/usr/bin/env bash
# How many clients per device, on CPU slots: three workers-per-device sweeps, each under about
# 3 minutes on two cores, written as the FAQ section's inputs:
#
#   docs/faq/cpu-slots/results/clients/resnet18/     a compute-heavy client (ResNet-18)
#   docs/faq/cpu-slots/results/clients/flower-like/  a host-heavy one (--preset flower-like:
#                                                    DataLoader workers, CPU transforms, ...)
#   docs/faq/cpu-slots/results/clients/example-app/  the example Flower app, unchanged
#
# each with one results file per value and summary.json (clients/s, memory per worker, the
# knee and its client_resources). Run it on a quiet machine: other load on the cores shows up
# in the numbers. Then the FAQ pages take them with --clients-sweep (printed at the end).
#
#   bash scripts/clients-per-device.sh             # the three sweeps
#   bash scripts/clients-per-device.sh --tiny OUT  # a seconds-long check of the plumbing
set -euo pipefail
cd "$(dirname "$0")/.."
tiny=0
out=docs/faq/cpu-slots/results/clients
case "${1:-}" in
  --tiny) tiny=1; out=${2:?usage: bash scripts/clients-per-device.sh --tiny OUTDIR} ;;
  "") ;;
  *) echo "usage: bash scripts/clients-per-device.sh [--tiny OUTDIR]" >&2; exit 2 ;;
esac
gpubench=${GPUBENCH:-gpubench}
# Flower's engine where it is installed, on the Flower app (its cold start, a Ray of its own
# at every value, would take the other two sweeps past their 3 minutes on two cores).
app_modes=multi-gpu,ray
python -c 'import flwr' 2>/dev/null && app_modes=$app_modes,flower
common=(--devices cpu:2 --interleave --quiet)
if [ "$tiny" = 1 ]; then
  values=1,2 clients=4 rounds=(--rounds 1 --warmup 0) app_size="dataset-size=256"
else
  values=1,2,4 clients=8 rounds=(--rounds 2 --warmup 1) app_size="dataset-size=1200"
fi
mkdir -p "$out"
status=0
run() {  # NAME ARGS...: one sweep; a failed one is reported and the others still run
  local name=$1
  shift
  rm -rf "${out:?}/$name"
  echo "== $name"
  "$gpubench" sweep --workers-per-device "$values" "${common[@]}" "$@" --out-dir "$out/$name" \
    || { echo "== $name exit $?" >&2; status=1; }
}

run resnet18 --modes multi-gpu,ray --case resnet18 --clients "$clients" \
  --samples-per-client 16 --batch-size 8 "${rounds[@]}"
run flower-like --modes multi-gpu,ray --case cnn --preset flower-like --clients "$clients" \
  --samples-per-client 64 --batch-size 32 "${rounds[@]}"
run example-app --modes "$app_modes" --case flower:examples/flower-quickstart/app.py:app \
  --initial-model examples/flower-quickstart/task.py:Net \
  --run-config "batch-size=32 local-epochs=1 $app_size" --train-config "lr=0.01" \
  --clients 4 "${rounds[@]}"

echo "the FAQ pages with this section:"
echo "  gpubench faq ... --clients-sweep $out/resnet18 --clients-sweep $out/flower-like" \
  "--clients-sweep $out/example-app"
exit $status
