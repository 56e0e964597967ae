"""What tracing costs a round, side by side in one run (it must stay <= 1% of a round).

    pytest bench_cases/test_trace_cost.py --benchmark-json out.json

The trace itself is written from the results file after the run; the only part of it that
runs inside a round is the pair of scheduler-statistics readings around each client
(:func:`gpubench.machine.schedstat.start_waiting`: its measured waiting for the device). This
benchmarks that pair in a process with a worker's threads alive, times the cnn client with
and without the pair, interleaved, and reports both the reading's share of a client and the
with/without ratio in ``extra_info``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import torch
from test_phase_timer import _client  # bench_cases/ is on sys.path (no package)

from gpubench.machine import schedstat
from gpubench.train.pipeline import PhaseClock

LIMIT = 0.01


def _with_readings(train: Callable[[], float]) -> float:
    t0 = time.perf_counter()
    waited = schedstat.start_waiting()
    train()
    waited()
    return time.perf_counter() - t0


def test_the_wait_readings_cost_under_1_percent_of_a_cnn_client(benchmark):
    schedstat.count_whole_process()  # as a worker does: every thread of the process is read
    torch.ones(256, 256) @ torch.ones(256, 256)  # torch's intra-op threads started
    stop = threading.Event()
    idle = [threading.Thread(target=stop.wait) for _ in range(4)]  # a pool's helper threads
    for t in idle:
        t.start()
    try:
        benchmark(lambda: schedstat.start_waiting()())
        reading_s = benchmark.stats.stats.median
        plain, read = [], []
        for _ in range(5):  # interleaved, so drift hits both alike
            plain.append(_client(PhaseClock(lambda: None)))
            read.append(_with_readings(lambda: _client(PhaseClock(lambda: None))))
    finally:
        stop.set()
    client_s = sorted(plain)[2]
    share = reading_s / client_s
    benchmark.extra_info.update({
        "reading_s": reading_s, "client_s": client_s, "reading_share": share,
        "with_over_without": sorted(read)[2] / client_s,
        "threads_read": len(schedstat.waiting_ns() or {}),
    })
    assert share <= LIMIT, f"the readings take {share:.2%} of a client (limit {LIMIT:.0%})"
