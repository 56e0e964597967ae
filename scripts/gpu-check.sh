#!/usr/bin/env bash
# The prepared GPU check: one device call of at most BUDGET_S seconds (default 470: under 8
# minutes on an H100, H200 or RTX 4090), run from the source tree, installing nothing (such a
# machine may have torch but no package registry). The most valuable steps come first; each has
# a planned share (the table below, printed by --dry-run), is cut to what the budget leaves and
# killed (timeout -k) when it overruns, so a hung Ray, Flower or MPS shutdown cannot take the
# call past its end. Writes everything under OUTDIR and packs it into OUTDIR/gpu-check.tar.gz:
#
#   check.log            every step's output and exit status, the budget table first
#   doctor.json          the machine, and which counters the monitor gets (doctor "monitor")
#   compare.json         every mode on CUDA, interleaved (SM activity, occupancy, phases)
#   trace.json           the same round's timeline (only when compare has --trace)
#   compare-mps.json     serial + multiprocess, time-sliced and under a private MPS daemon
#   mps-raw.json         small-kernel processes on one GPU: alone, time-sliced, under MPS
#   device-stats.txt     per mode and device: kernel-active, SM active/occupancy, samples
#   reports/gpu-<model>/clients-cnn/   the clients-per-GPU knee of cnn: --workers-per-device
#                        1,2,4,8,16 on one GPU, with and without MPS
#   docs/faq/gpu-<model>/clients-cnn/  the FAQ pages written from that sweep
#   then, only with time left: the gpu-marked tests and the example Flower app on CUDA
#
# <model> is the GPU's model (gpu-h100, gpu-h200, gpu-rtx-4090); GPU_NAME sets it.
#
#   bash scripts/gpu-check.sh OUTDIR
#   bash scripts/gpu-check.sh --dry-run OUTDIR   # the budget table and the commands, run nothing
#   ONLY_CLIENTS=1 bash scripts/gpu-check.sh OUTDIR   # the clients-per-GPU sweeps alone (cnn
#                        with Ray and Flower, then resnet18 up to 8 workers: 16 ResNet-18
#                        workers interleaved do not fit a 24 GB card)
#
# Reports are rendered from the JSON files afterwards, anywhere:
#   gpubench report OUTDIR/compare.json -o reports/gpu/compare.md
set -uo pipefail
dry=0
if [ "${1:-}" = --dry-run ]; then
  dry=1
  shift
fi
out=${1:?usage: scripts/gpu-check.sh [--dry-run] OUTDIR}
only_clients=${ONLY_CLIENTS:-0}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
budget=${BUDGET_S:-470}
reserve=15  # kept for the summary and the tarball
kill_after=10  # a step that ignores SIGTERM this long after its time is killed
began=$(date +%s)
log() { echo "== $*" | tee -a "$out/check.log"; }

# gpu_model NAME: the folder name of a GPU model, from nvidia-smi's name:
# "NVIDIA H100 80GB HBM3" -> h100, "NVIDIA GeForce RTX 4090" -> rtx-4090,
# "NVIDIA A100-SXM4-80GB" -> a100 (vendor, brand, memory size and form factor left out).
gpu_model() {
  echo "$1" | tr '[:upper:]' '[:lower:]' | tr -s ' _-' '   ' | awk '{
    n = 0
    for (i = 1; i <= NF; i++) {
      w = $i
      if (w ~ /^(nvidia|geforce|tesla|quadro)$/ || w ~ /^[0-9]+gb$/ || w ~ /^hbm[0-9e]*$/ ||
          w ~ /^(pcie|nvl|sxm[0-9]*)$/) continue
      printf "%s%s", (n++ ? "-" : ""), w
    }
  }'
}
gpu_name=${GPU_NAME:-$(gpu_model "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)")}
gpu_name=${gpu_name:-gpu}
has_option() { $py -m gpubench "$1" --help 2>/dev/null | grep -q -- "$2"; }
has_flower() { $py -c 'import flwr' 2>/dev/null; }

# The plan: "name|seconds|when", in the order the steps run. "when" is always, or "spare" for
# a step that runs only if its whole share is left (the table's total counts the first kind).
plan=()
planned() { plan+=("$1|$2|${3:-always}"); }
all_modes=serial,threaded,multiprocess,multi-gpu,vectorized,streams,ray
has_flower && all_modes=$all_modes,flower
if [ "$only_clients" = 0 ]; then
  planned machine 30
  planned compare 120
  has_option compare --trace && planned trace 40
  planned compare-mps 70
  planned mps-raw 40
  planned clients-cnn 130
  planned faq-cnn 15
  planned gpu-tests 40 spare
  planned example-app 60 spare
else
  planned machine 30
  planned clients-cnn 200
  planned faq-cnn 15
  planned clients-resnet18 180
  planned faq-resnet18 15
fi

field() {  # field KEY N: the Nth field of KEY's plan entry
  local entry
  for entry in "${plan[@]}"; do
    [ "${entry%%|*}" = "$1" ] && { echo "$entry" | cut -d'|' -f"$2"; return 0; }
  done
  return 1
}

print_plan() {
  local entry key secs when total=0
  log "budget: ${budget} s on gpu-$gpu_name ($reserve s kept for the tarball, $kill_after s to kill a step)"
  printf '   %-14s %9s %9s\n' step "at most" "by" | tee -a "$out/check.log"
  for entry in "${plan[@]}"; do
    IFS='|' read -r key secs when <<<"$entry"
    if [ "$when" = spare ]; then
      printf '   %-14s %8ss %9s\n' "$key" "$secs" "if left" | tee -a "$out/check.log"
    else
      total=$(( total + secs ))
      printf '   %-14s %8ss %8ss\n' "$key" "$secs" "$total" | tee -a "$out/check.log"
    fi
  done
  has_option compare --trace || echo "   (trace: this gpubench's compare has no --trace; no slot)" \
    | tee -a "$out/check.log"
  log "planned: $(( total + reserve + kill_after )) s of ${budget} s"
}

spent=0  # what --dry-run counts as used: each step's whole share
# step KEY DESCRIPTION CMD...: run CMD with at most KEY's share, fewer if the budget is running
# out; a "spare" step runs only with its whole share left.
step() {
  local key=$1 name=$2 want when left elapsed
  shift 2
  want=$(field "$key" 2) || { log "$name skipped: not in the plan"; return 0; }
  when=$(field "$key" 3)
  elapsed=$(( dry ? spent : $(date +%s) - began ))
  left=$(( budget - elapsed - reserve - kill_after ))
  if [ "$when" = spare ] && [ "$left" -lt "$want" ]; then
    log "$name skipped: ${left} s left of the ${want} s it needs"
    return 0
  fi
  [ "$left" -lt "$want" ] && want=$left
  if [ "$want" -lt 10 ]; then
    log "$name skipped: out of time"
    return 0
  fi
  log "$name (at most ${want} s)"
  if [ "$dry" = 1 ]; then
    spent=$(( spent + want ))
    echo "would run: $(printf '%q ' "$@")"
    return 0
  fi
  timeout -k "$kill_after" "$want" "$@" >>"$out/check.log" 2>&1
  echo "$name exit $?" >>"$out/check.log"
}

print_plan

step machine "machine and doctor" bash -c '
  nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv
  command -v nvidia-cuda-mps-control || echo "nvidia-cuda-mps-control: not on PATH"
  "$1" -c "import torch,sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.is_available())"
  nproc
  "$1" -m gpubench doctor --json >"$2/doctor.json"' machine "$py" "$out"

clients_sweep() {  # CASE VALUES MODES: workers 1..N on one GPU, with and without MPS, and its FAQ
  local case=$1 values=$2 modes=$3 sweep_dir="$out/reports/gpu-$gpu_name/clients-$1"
  step "clients-$case" "clients per GPU ($case, workers per device $values, with and without MPS)" \
    $py -m gpubench sweep --devices cuda:0 --case "$case" --workers-per-device "$values" \
    --modes "$modes" --mps on --clients 32 --samples-per-client 128 --batch-size 32 \
    --warmup 1 --rounds 2 --interleave --quiet --out-dir "$sweep_dir"
  step "faq-$case" "FAQ pages from the clients-per-GPU sweep ($case)" $py -m gpubench faq \
    --lang both --from "$sweep_dir/workers_per_device-1.json" --clients-sweep "$sweep_dir" \
    --out "$out/docs/faq/gpu-$gpu_name/clients-$case"
}

if [ "$only_clients" = 1 ]; then
  clients_modes=multi-gpu,ray
  has_flower && clients_modes=$clients_modes,flower
  clients_sweep cnn 1,2,4,8,16 "$clients_modes"
  clients_sweep resnet18 1,2,4,8 "$clients_modes"
else
step compare "compare on cuda (every mode)" $py -m gpubench compare --devices cuda --clients 10 \
  --batch-size 128 --rounds 4 --interleave --quiet --modes "$all_modes" --out "$out/compare.json"

step trace "the timeline of a round on cuda" $py -m gpubench compare --devices cuda --clients 10 \
  --batch-size 128 --rounds 2 --quiet --modes serial,threaded,multiprocess,multi-gpu \
  --trace "$out/trace.json" --out "$out/compare-trace.json"

# Small kernels (batch 32) from 4 processes: where MPS can run them side by side.
step compare-mps "compare on cuda (multiprocess time-sliced and under MPS)" $py -m gpubench \
  compare --devices cuda --clients 8 --batch-size 32 --rounds 5 --interleave --quiet \
  --modes serial,multiprocess --workers 4 --mps on --out "$out/compare-mps.json"

step mps-raw "MPS raw: small-kernel processes alone, time-sliced, under MPS" $py \
  scripts/mps_raw.py "$out/mps-raw.json"

clients_sweep cnn 1,2,4,8,16 multi-gpu

step gpu-tests "gpu-marked tests" $py -m pytest -m gpu -q -p no:cacheprovider -o addopts="" tests

step example-app "compare on cuda (the example Flower app)" $py -m gpubench compare --devices cuda \
  --case flower:examples/flower-quickstart/app.py:app \
  --initial-model examples/flower-quickstart/task.py:Net \
  --run-config "batch-size=32 local-epochs=1 dataset-size=1200" --train-config "lr=0.01" \
  --clients 4 --rounds 3 --quiet --modes serial,threaded,multiprocess \
  --out "$out/compare-example-app.json"
fi

[ "$dry" = 1 ] && exit 0
log "device stats (kernel-active, SM activity and occupancy, samples per phase)"
timeout -k 5 20 $py scripts/gpu_device_stats.py "$out" >"$out/device-stats.txt" 2>>"$out/check.log"
echo "device stats exit $?" >>"$out/check.log"
tar -czf "$out/gpu-check.tar.gz" -C "$out" --exclude gpu-check.tar.gz . 2>/dev/null
log "done in $(( $(date +%s) - began )) s"
