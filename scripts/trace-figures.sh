#!/usr/bin/env bash
# The trace's figures (run on a quiet machine; about two minutes on two cores):
#
#   bash scripts/trace-figures.sh [OUT_DIR]       # default results/trace-figures
#
# 1. the done-when run with --trace: the trace's structure checked against its results file
#    (tests/trace_check.py: fields, process and track names, no partial overlaps on a track,
#    every client round's phase slices within 2% or 1 ms of its phases), device counters;
# 2. per mode, the clients' mean waiting for a CPU against their compute (wait_s / compute);
# 3. what tracing costs the rounds: the two schedstat readings around each client (the only
#    part that runs inside a round; the trace itself is written from the results afterwards),
#    timed in a process with as many threads as a worker, against the measured round times of
#    the same run; and the time to write the trace.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-results/trace-figures}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py="${PYTHON:-python}"

"$py" -m gpubench compare --clients 6 --batch-size 32 --samples-per-client 256 --devices cpu:2 \
  --modes serial,threaded,multiprocess,multi-gpu --rounds 2 --quiet \
  --out "$out/run.json" --trace "$out/run.trace.json" || true  # exit 1: a finding, not a stop

"$py" - "$out/run.json" "$out/run.trace.json" <<'PY'
import json, statistics, sys, threading, time

import torch

from gpubench.machine import schedstat
from gpubench.report.trace import write_trace
from gpubench.results import read_results
from tests.trace_check import check_trace

results = read_results(sys.argv[1])
trace = json.load(open(sys.argv[2]))
check_trace(trace, results)
events = trace["traceEvents"]
counters = sorted({e["name"] for e in events if e["ph"] == "C"})
processes = sorted(e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name")
print(f"trace: {len(events)} events, structure and phase sums checked; processes: {processes}")
print(f"counters: {counters}")

print("\nwaiting for a CPU, measured rounds (mean per client):")
rounds = {}
for m in results.modes:
    cs = [c for r in m.rounds if not r.warmup for c in r.clients]
    waits = [c.wait_s for c in cs if c.wait_s is not None]
    compute = sum(c.phases.get("compute", 0.0) for c in cs) / max(len(cs), 1)
    if waits:
        wait = sum(waits) / len(waits)
        print(f"  {m.name:14s} wait {wait * 1e3:8.2f} ms of compute {compute * 1e3:8.2f} ms"
              f" = {100 * wait / compute:5.1f}%  ({len(waits)} client rounds)")
    rounds[m.name] = m.round_times_s

# The schedstat readings a worker makes per client, with a worker's threads alive.
schedstat.count_whole_process()
torch.set_num_threads(max(torch.get_num_threads(), 2))
torch.ones(256, 256) @ torch.ones(256, 256)  # torch's intra-op threads started
stop = threading.Event()
idle = [threading.Thread(target=stop.wait) for _ in range(4)]
for t in idle:
    t.start()
reps = 2000
t0 = time.perf_counter()
for _ in range(reps):
    schedstat.start_waiting()()
per_client = (time.perf_counter() - t0) / reps
threads = len(schedstat.waiting_ns() or {})
stop.set()
clients = results.config.clients or 0
print(f"\nschedstat readings per client: {per_client * 1e6:.1f} us ({threads} threads read)")
for name, times in rounds.items():
    if times:
        med = statistics.median(times)
        print(f"  {name:14s} median round {med * 1e3:8.2f} ms; {clients} clients' readings "
              f"{clients * per_client * 1e3:.3f} ms = {100 * clients * per_client / med:.3f}%"
              " of the round (serial or spread over workers: at most this)")
t0 = time.perf_counter()
write_trace(results, sys.argv[2])
print(f"writing the trace afterwards: {(time.perf_counter() - t0) * 1e3:.1f} ms (outside every round)")
PY
