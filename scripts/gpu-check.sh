#!/usr/bin/env bash
# The prepared GPU check: run on a machine with a CUDA GPU, from the source tree, installing
# nothing (such a machine may have torch but no package registry). Writes everything under
# OUTDIR and packs it into OUTDIR/gpu-check.tar.gz.
#
#   bash scripts/gpu-check.sh OUTDIR
#
# Reports are rendered from the JSON files afterwards, anywhere:
#   gpubench report OUTDIR/compare.json -o reports/gpu/compare.md
set -uo pipefail
out=${1:?usage: scripts/gpu-check.sh OUTDIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
log() { echo "== $*" | tee -a "$out/check.log"; }

log "machine"
{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv; \
  $py -c 'import torch,sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.is_available())'; \
  nproc; } >>"$out/check.log" 2>&1

log "doctor"
$py -m gpubench doctor --json >"$out/doctor.json" 2>>"$out/check.log"
echo "doctor exit $?" >>"$out/check.log"

log "gpu-marked tests"
timeout 100 $py -m pytest -m gpu -q -p no:cacheprovider -o addopts="" tests >>"$out/check.log" 2>&1
echo "gpu tests exit $?" >>"$out/check.log"

log "compare on cuda (default modes)"
timeout 90 $py -m gpubench compare --devices cuda --clients 10 --batch-size 128 --rounds 5 --quiet \
  --out "$out/compare.json" >>"$out/check.log" 2>&1
echo "compare exit $?" >>"$out/check.log"

log "compare on cuda (streams, vectorized)"
timeout 60 $py -m gpubench compare --devices cuda --clients 10 --batch-size 128 --rounds 5 --quiet \
  --modes serial,threaded,streams,vectorized --out "$out/compare-one-gpu.json" >>"$out/check.log" 2>&1
echo "compare one-gpu exit $?" >>"$out/check.log"

[ "${SKIP_SWEEP:-0}" = 1 ] || {
log "batch sweep on cuda"
timeout ${SWEEP_TIMEOUT:-80} $py -m gpubench sweep --devices cuda --clients 10 --batch-size 32,128 --quiet \
  --modes serial,threaded,multiprocess --out-dir "$out/sweep" >>"$out/check.log" 2>&1
echo "sweep exit $?" >>"$out/check.log"
}

tar -czf "$out/gpu-check.tar.gz" -C "$out" --exclude gpu-check.tar.gz . 2>/dev/null
log "done"
