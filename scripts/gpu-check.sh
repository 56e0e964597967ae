#!/usr/bin/env bash
# The prepared GPU check: run on a machine with a CUDA GPU, from the source tree, installing
# nothing (such a machine may have torch but no package registry). One call, at most
# BUDGET_S seconds (default 470: under 8 minutes on an H100/H200); a step that would not fit
# is skipped and logged. Writes everything under OUTDIR and packs it into
# OUTDIR/gpu-check.tar.gz:
#
#   check.log            every step's output and exit status
#   doctor.json          the machine, and which counters the monitor gets (doctor "monitor")
#   compare.json         default modes on CUDA (SM activity, occupancy, per-phase utilisation)
#   compare-mps.json     serial + multiprocess with and without MPS (when compare has --mps)
#   mps-raw.json         small-kernel processes on one GPU: alone, time-sliced, under MPS
#   compare-one-gpu.json streams and vectorized
#   compare-flower-like.json, compare-example-app.json  the own-client pipeline and example app
#   device-stats.txt     per mode and device: kernel-active, SM active/occupancy, samples
#   sweep/               batch sizes (last; skipped when time is short)
#   reports/gpu-<name>/clients-<case>/   how many clients per GPU: a --workers-per-device
#                        1,2,4,8,16 sweep on one GPU, with and without MPS (cnn, resnet18)
#   docs/faq/gpu-<name>/clients-<case>/  the FAQ pages written from each of those sweeps
#
#   bash scripts/gpu-check.sh OUTDIR
#   bash scripts/gpu-check.sh --dry-run OUTDIR   # print the commands, run nothing
#   ONLY_CLIENTS=1 bash scripts/gpu-check.sh OUTDIR   # only the clients-per-GPU sweeps
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
[ "$only_clients" = 1 ] && budget=${BUDGET_S:-600}
began=$(date +%s)
log() { echo "== $*" | tee -a "$out/check.log"; }

# step NAME SECONDS CMD...: run CMD with at most SECONDS, fewer if the budget is running out.
step() {
  local name=$1 want=$2 left
  shift 2
  left=$(( budget - ($(date +%s) - began) - 15 ))  # 15 s kept for the summary and the tarball
  [ "$left" -lt "$want" ] && want=$left
  if [ "$want" -lt 20 ]; then
    log "$name skipped: out of time"
    return 0
  fi
  log "$name (at most ${want} s)"
  if [ "$dry" = 1 ]; then
    echo "would run: $(printf '%q ' "$@")"
    return 0
  fi
  timeout "$want" "$@" >>"$out/check.log" 2>&1
  echo "$name exit $?" >>"$out/check.log"
}

log "machine"
[ "$dry" = 1 ] || { nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv; \
  command -v nvidia-cuda-mps-control || echo "nvidia-cuda-mps-control: not on PATH"; \
  $py -c 'import torch,sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.is_available())'; \
  nproc; } >>"$out/check.log" 2>&1

log "doctor"
if [ "$dry" = 0 ]; then
  timeout 60 $py -m gpubench doctor --json >"$out/doctor.json" 2>>"$out/check.log"
  echo "doctor exit $?" >>"$out/check.log"
fi
# The GPU's name for the folders (NVIDIA H200 -> h200); GPU_NAME sets it.
gpu_name=${GPU_NAME:-$( [ "$dry" = 1 ] || nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null \
  | head -1 | awk '{print tolower($NF)}')}
gpu_name=${gpu_name:-gpu}

if [ "$only_clients" = 0 ]; then
step "gpu-marked tests" 90 $py -m pytest -m gpu -q -p no:cacheprovider -o addopts="" tests

step "compare on cuda (default modes)" 90 $py -m gpubench compare --devices cuda --clients 10 \
  --batch-size 128 --rounds 5 --quiet --out "$out/compare.json"

# Small kernels (batch 32) from 4 processes: where MPS can run them side by side.
if $py -m gpubench compare --help 2>/dev/null | grep -q -- '--mps'; then
  step "compare on cuda (multiprocess with and without MPS)" 100 $py -m gpubench compare \
    --devices cuda --clients 8 --batch-size 32 --rounds 5 --interleave --quiet \
    --modes serial,multiprocess --workers 4 --mps on --out "$out/compare-mps.json"
else
  log "compare --mps: this gpubench has no --mps flag yet; mps-raw.json measures MPS alone"
fi

step "MPS raw: small-kernel processes alone, time-sliced, under MPS" 60 $py - "$out/mps-raw.json" <<'EOF'
import json, os, subprocess, sys, time
from gpubench.modes import mps
from gpubench.machine.devices import resolve_devices

WORK = r"""
import sys, time, torch
x = torch.randn(512, 512, device="cuda"); w = torch.randn(512, 512, device="cuda") / 32
torch.cuda.synchronize(); print("ready", flush=True); sys.stdin.readline()
t = time.perf_counter()
for _ in range(20000):
    x = torch.tanh(x @ w)
torch.cuda.synchronize(); print(time.perf_counter() - t, flush=True)
"""
device = resolve_devices("cuda").devices[0]


def run(n, daemon=None):
    env = {**os.environ, **(daemon.worker_environment(device) if daemon else {})}
    procs = [subprocess.Popen([sys.executable, "-c", WORK], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(n)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        if daemon:
            daemon.check_attached({p.pid: device.id for p in procs})
        t = time.perf_counter()
        for p in procs:
            p.stdin.write("go\n"); p.stdin.flush()
        each = [float(p.stdout.readline()) for p in procs]
        return {"processes": n, "wall_s": round(time.perf_counter() - t, 4), "each_s": each}
    finally:
        for p in procs:
            p.stdin.close(); p.wait(60)


report = {"device": device.to_dict(), "work": "20000 x (512x512 matmul + tanh) per process"}
report["alone"] = run(1)
report["time_sliced"] = run(4)
try:
    with mps.mps_daemon([device]) as daemon:
        report["mps"] = run(4, daemon)
    report["mps_over_time_sliced"] = round(report["time_sliced"]["wall_s"] / report["mps"]["wall_s"], 3)
except (mps.MpsUnavailable, mps.MpsAttachError) as exc:
    report["mps"] = None
    report["mps_reason"] = str(exc)
json.dump(report, open(sys.argv[1], "w"), indent=1)
print(json.dumps({k: v for k, v in report.items() if k != "device"}))
EOF

step "compare on cuda (streams, vectorized)" 60 $py -m gpubench compare --devices cuda --clients 10 \
  --batch-size 128 --rounds 5 --quiet --modes serial,threaded,streams,vectorized \
  --out "$out/compare-one-gpu.json"

# The user's own client on CUDA: a typical Flower client's pipeline, and the example app.
step "compare on cuda (--preset flower-like)" 70 $py -m gpubench compare --devices cuda \
  --preset flower-like --clients 6 --batch-size 32 --samples-per-client 320 --rounds 3 --quiet \
  --modes serial,threaded,multiprocess --out "$out/compare-flower-like.json"
step "compare on cuda (the example Flower app)" 70 $py -m gpubench compare --devices cuda \
  --case flower:examples/flower-quickstart/app.py:app \
  --initial-model examples/flower-quickstart/task.py:Net \
  --run-config "batch-size=32 local-epochs=1 dataset-size=1200" --train-config "lr=0.01" \
  --clients 4 --rounds 3 --quiet --modes serial,threaded,multiprocess \
  --out "$out/compare-example-app.json"

log "device stats (kernel-active, SM activity and occupancy, samples per phase)"
[ "$dry" = 1 ] || timeout 30 $py - "$out" >"$out/device-stats.txt" 2>>"$out/check.log" <<'EOF'
import glob, json, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "compare*.json"))):
    data = json.load(open(path))
    monitor = data.get("monitor") or {}
    print(f"# {os.path.basename(path)}: backend {monitor.get('backend')}, "
          f"fields {sorted(monitor.get('fields') or {})}")
    print(f"  note: {monitor.get('note')}")
    for mode in data.get("modes", []):
        times = sorted(mode.get("round_times_s") or [])
        median = f"{times[len(times) // 2]:.4f} s" if times else "-"
        for s in mode.get("device_stats", []):
            if not s["device"].startswith("cuda"):
                continue
            print(f"  {mode['name']:<24} {s['device']}: kernel-active {s.get('util_mean_pct')}% "
                  f"SM active {s.get('sm_active_mean_pct')}% occupancy "
                  f"{s.get('sm_occupancy_mean_pct')}% from {s.get('samples')} samples"
                  f"{' (few)' if s.get('few_samples') else ''}; median round {median}")
    for span in monitor.get("spans", []):
        if span.get("phase") == "round":
            print(f"  span {span['mode']} round {span['round']} {span['start_s']}-{span['end_s']} s: "
                  f"util {span.get('util_mean_pct')} from {span.get('util_samples')} samples")
EOF
echo "device stats exit $?" >>"$out/check.log"

[ "${SKIP_SWEEP:-0}" = 1 ] || step "batch sweep on cuda" 80 $py -m gpubench sweep --devices cuda \
  --clients 10 --batch-size 32,128 --quiet --modes serial,threaded,multiprocess --out-dir "$out/sweep"
fi

# How many clients per GPU: 1..16 workers on one GPU, each with and without MPS (a "+mps" row
# for multi-gpu), Ray's actors (num_gpus 1/k) and Flower's where installed; serial is the
# reference at each value. A compute-heavy and a heavier model; then the FAQ from each sweep.
clients_modes=multi-gpu,ray
[ "$dry" = 1 ] || ! $py -c 'import flwr' 2>/dev/null || clients_modes=$clients_modes,flower
for case in cnn resnet18; do
  sweep_dir="$out/reports/gpu-$gpu_name/clients-$case"
  step "clients per GPU ($case, workers per device 1..16, with and without MPS)" 240 \
    $py -m gpubench sweep --devices cuda:0 --case "$case" --workers-per-device 1,2,4,8,16 \
    --modes "$clients_modes" --mps on --clients 32 --samples-per-client 128 --batch-size 32 \
    --warmup 1 --rounds 3 --interleave --quiet --out-dir "$sweep_dir"
  step "FAQ pages from the clients-per-GPU sweep ($case)" 40 $py -m gpubench faq --lang both \
    --from "$sweep_dir/workers_per_device-1.json" --clients-sweep "$sweep_dir" \
    --out "$out/docs/faq/gpu-$gpu_name/clients-$case"
done

[ "$dry" = 1 ] && exit 0
tar -czf "$out/gpu-check.tar.gz" -C "$out" --exclude gpu-check.tar.gz . 2>/dev/null
log "done in $(( $(date +%s) - began )) s"
