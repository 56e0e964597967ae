"""The sampler's timing and bookkeeping, with an injected clock and a scripted backend."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence

import pytest

from gpubench.monitor.probe import Reading
from gpubench.monitor.sampler import Sampler, next_tick
from gpubench.monitor.timeline import percentile
from gpubench.results import PHASE_BETWEEN, PHASE_ROUND, PHASE_WARMUP


class FakeClock:
    def __init__(self, now: float = 50.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ScriptedProbe:
    """util = script(t) per device; each read costs ``cost(t)`` seconds of the fake clock."""

    backend = "host"
    fields = {"util": "scripted", "mem": "scripted"}

    def __init__(
        self,
        clock: FakeClock,
        util: Callable[[str, float], float | None],
        cost: Callable[[float], float] = lambda t: 0.0,
    ) -> None:
        self.clock, self.util, self.cost = clock, util, cost
        self.reads: list[float] = []
        self.closed = False

    def read(self, pids_by_device: Mapping[str, Sequence[int]]) -> dict[str, Reading]:
        t = self.clock.now
        self.reads.append(t)
        self.clock.now += self.cost(t)
        return {
            d: Reading(
                util_pct=self.util(d, t),
                mem_bytes=1000 + round(t * 10),
                process_mem_bytes={p: 7 for p in pids_by_device.get(d, ())},
            )
            for d in ("cpu:0", "cpu:1")
        }

    def notes(self) -> list[str]:
        return []

    def close(self) -> None:
        self.closed = True


def driven(clock: FakeClock, until: float, events=()) -> Callable[[float], bool]:
    """A ``wait`` for the sampler loop on the fake clock: it fires ``events`` ((time,
    callable) pairs, as the harness thread would) and stops once the clock passes ``until``."""
    pending = sorted(events, key=lambda e: e[0])

    def wait(timeout: float) -> bool:
        target = clock.now + timeout
        while pending and pending[0][0] <= target:
            at, action = pending.pop(0)
            clock.now = max(clock.now, at)
            action()
        clock.now = target
        return clock.now > until

    return wait


def run_loop(sampler: Sampler) -> None:
    sampler.start(background=False)
    sampler.run()


def test_next_tick_skips_missed_ticks() -> None:
    assert next_tick(0.0, 0.1, 0.05, 0) == 1
    assert next_tick(0.0, 0.1, 0.35, 1) == 4  # ticks 2 and 3 are past: skipped
    assert next_tick(10.0, 0.5, 10.0, 0) == 1


def test_schedule_does_not_drift_with_sampling_cost() -> None:
    clock = FakeClock()
    probe = ScriptedProbe(clock, lambda d, t: 0.0, cost=lambda t: 0.03)
    sampler = Sampler(["cpu:0", "cpu:1"], 0.1, probe, clock=clock, wait=driven(clock, 51.05))
    run_loop(sampler)
    got = [round(t - 50.0, 9) for t in probe.reads]
    assert got == [round(0.1 * k, 9) for k in range(11)]  # not 0.13, 0.26, ...
    assert sampler.missed_ticks == 0


def test_slow_sample_skips_ticks_and_stays_on_the_grid() -> None:
    clock = FakeClock(0.0)
    probe = ScriptedProbe(clock, lambda d, t: 0.0, cost=lambda t: 0.25 if 0.15 < t < 0.25 else 0.0)
    sampler = Sampler(["cpu:0", "cpu:1"], 0.1, probe, clock=clock, wait=driven(clock, 0.85))
    run_loop(sampler)
    assert [round(t, 9) for t in probe.reads] == [0.0, 0.1, 0.2, 0.5, 0.6, 0.7, 0.8]
    assert sampler.missed_ticks == 2  # 0.3 and 0.4
    assert "2 tick(s) skipped" in sampler.results_section()["note"]


def test_spans_tag_samples_and_stats_use_measured_rounds_only() -> None:
    clock = FakeClock(0.0)

    def util(d: str, t: float) -> float:
        if d == "cpu:1":
            return 10.0
        return 100.0 if 0.97 <= t < 1.97 else 20.0  # busy during serial's measured round

    probe = ScriptedProbe(clock, util)
    events = [
        (0.45, lambda: sampler.mark("serial", PHASE_WARMUP, 0)),
        (0.55, lambda: sampler.watch_pids("serial", {1234: "cpu:0"})),
        (0.95, lambda: sampler.mark("serial", PHASE_ROUND, 1)),
        (1.95, lambda: sampler.mark(None, PHASE_BETWEEN, None)),
    ]
    wait = driven(clock, 2.55, events)
    sampler = Sampler(["cpu:0", "cpu:1"], 0.1, probe, clock=clock, wait=wait)
    run_loop(sampler)
    sampler.stop()
    assert probe.closed
    section = sampler.results_section()
    spans = section["spans"]
    assert [(s["mode"], s["phase"], s["round"]) for s in spans] == [
        (None, "between", None),
        ("serial", "warmup", 0),
        ("serial", "round", 1),
        (None, "between", None),
    ]
    assert [(s["start_s"], s["end_s"]) for s in spans[:3]] == [
        (0.0, 0.45),
        (0.45, 0.95),
        (0.95, 1.95),
    ]
    t, span = section["timeline"]["t"], section["timeline"]["span"]
    assert all(
        spans[s]["start_s"] <= ti <= spans[s]["end_s"] for ti, s in zip(t, span, strict=True)
    )
    assert span.count(2) == 10  # samples at 1.0 .. 1.9
    busy, idle = sampler.device_stats("serial")
    assert busy.busy is True and busy.util_mean_pct == 100.0 and busy.samples == 10
    assert idle.busy is False and idle.util_mean_pct == 10.0
    assert busy.process_mem_peak_bytes == {"1234": 7} and idle.process_mem_peak_bytes == {}
    assert busy.mem_peak_bytes == 1000 + 19
    assert sampler.device_stats("threaded")[0].busy is None  # no samples: unknown, not idle
    assert section["busy_threshold_pct"] == 50.0
    assert set(section["timeline"]) == {"t", "span", "util", "mem"}  # null columns left out


def test_timeline_is_compact() -> None:
    clock = FakeClock(0.0)
    probe = ScriptedProbe(clock, lambda d, t: 33.3)
    sampler = Sampler(["cpu:0", "cpu:1"], 0.1, probe, clock=clock)
    sampler.start(background=False)
    for _ in range(6000):  # ten minutes at 10 Hz
        clock.now += 0.1
        sampler.sample()
    text = json.dumps(sampler.results_section())
    assert len(text) < 400_000


def test_backend_failure_is_recorded_not_raised() -> None:
    clock = FakeClock(0.0)

    def broken(d: str, t: float) -> float:
        raise RuntimeError("boom")

    sampler = Sampler(["cpu:0", "cpu:1"], 0.1, ScriptedProbe(clock, broken), clock=clock)
    sampler.start(background=False)
    sampler.sample()
    section = sampler.results_section()
    assert section["timeline"]["util"]["cpu:0"] == [None]
    assert "1 sample(s) failed" in section["note"]


def test_real_thread_samples_and_stops_promptly() -> None:
    clock = FakeClock(0.0)
    probe = ScriptedProbe(clock, lambda d, t: 1.0)
    sampler = Sampler(["cpu:0", "cpu:1"], 0.02, probe, clock=time.perf_counter)
    sampler.start()
    time.sleep(0.2)
    before = time.perf_counter()
    sampler.stop()
    assert time.perf_counter() - before < 0.5
    assert 3 <= len(probe.reads) <= 15
    assert sampler.t0 is not None


def test_bad_interval_and_mark_before_start() -> None:
    probe = ScriptedProbe(FakeClock(), lambda d, t: 0.0)
    with pytest.raises(ValueError, match="interval"):
        Sampler(["cpu:0"], 0.0, probe, clock=time.perf_counter)
    sampler = Sampler(["cpu:0"], 0.1, probe, clock=time.perf_counter)
    with pytest.raises(RuntimeError, match="start"):
        sampler.mark("serial", PHASE_ROUND, 0)


def test_percentile() -> None:
    assert percentile([1.0], 95) == 1.0
    assert percentile([0.0, 10.0], 95) == pytest.approx(9.5)
    assert percentile(list(map(float, range(101))), 95) == pytest.approx(95.0)
