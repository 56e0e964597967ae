"""The sampler's timing and bookkeeping, with an injected clock and a scripted backend."""

from __future__ import annotations

import json
import threading
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
    assert busy.mem_peak_bytes == 7  # its own process's, where per-pid memory matched it
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


class CountingProbe(ScriptedProbe):
    """Sets ``enough`` once it has been read ``wanted`` times."""

    def __init__(self, wanted: int) -> None:
        super().__init__(FakeClock(0.0), lambda d, t: 1.0)
        self.wanted = wanted
        self.enough = threading.Event()

    def read(self, pids_by_device: Mapping[str, Sequence[int]]) -> dict[str, Reading]:
        out = super().read(pids_by_device)
        if len(self.reads) >= self.wanted:
            self.enough.set()
        return out


def test_real_thread_samples_on_its_own_until_stopped() -> None:
    probe = CountingProbe(3)
    sampler = Sampler(["cpu:0", "cpu:1"], 0.02, probe, clock=time.perf_counter)
    sampler.start()
    assert probe.enough.wait(30), "the sampler thread took no third sample"
    sampler.stop()
    assert sampler._thread is not None and not sampler._thread.is_alive()
    after_stop = len(probe.reads)
    assert after_stop >= 3 and sampler.t0 is not None
    sampler.stop()  # a second stop is harmless and samples nothing
    assert len(probe.reads) == after_stop


def test_stop_does_not_wait_for_the_next_tick() -> None:
    probe = CountingProbe(1)
    sampler = Sampler(["cpu:0"], 60.0, probe, clock=time.perf_counter)
    sampler.start()
    assert probe.enough.wait(30), "the sampler thread took no first sample"
    before = time.perf_counter()
    sampler.stop()  # the next sample is 60 s away: stop ends the wait at once
    assert time.perf_counter() - before < 30
    assert len(probe.reads) == 1


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


class PidProbe(ScriptedProbe):
    """Each watched pid uses ``pid * 10`` bytes; remembers which pids it was asked for."""

    def __init__(self, clock: FakeClock, util, *, process_sum: bool = False) -> None:
        super().__init__(clock, util)
        self.mem_is_process_sum = process_sum
        self.asked: list[set[int]] = []

    def read(self, pids_by_device: Mapping[str, Sequence[int]]) -> dict[str, Reading]:
        out = super().read(pids_by_device)
        self.asked.append({p for pids in pids_by_device.values() for p in pids})
        for d, r in out.items():
            r.process_mem_bytes = {p: p * 10 for p in pids_by_device.get(d, ())}
            if self.mem_is_process_sum:
                r.mem_bytes = sum(r.process_mem_bytes.values()) or None
        return out


def interleaved(sampler: Sampler) -> list[tuple[float, Callable[[], None]]]:
    """What the harness does with --interleave: start both modes, then alternate rounds."""
    events: list[tuple[float, Callable[[], None]]] = [
        (0.05, lambda: sampler.mark("a", "cold_start", None)),
        (0.15, lambda: sampler.watch_pids("a", {11: "cpu:0"})),
        (0.25, lambda: sampler.mark("b", "cold_start", None)),
        (0.35, lambda: sampler.watch_pids("b", {22: "cpu:0"})),
    ]
    for k in range(3):  # a round of a from 1+2k to 1.5+2k, one of b from 2+2k to 2.5+2k
        for name, at in (("a", 1.0 + 2 * k), ("b", 2.0 + 2 * k)):
            events.append((at - 0.03, lambda n=name, k=k: sampler.mark(n, PHASE_ROUND, k)))
            events.append((at + 0.47, lambda: sampler.mark(None, PHASE_BETWEEN, None)))
    events.append((7.0, lambda: sampler.unwatch_pids("a")))
    return events


def a_or_b(d: str, t: float) -> float:
    # What the slot did in the 0.1 s before the sample at t: a's rounds 90%, b's 30%.
    mid = t - 0.05
    for k in range(3):
        if 0.97 + 2 * k <= mid < 1.47 + 2 * k:
            return 90.0
        if 1.97 + 2 * k <= mid < 2.47 + 2 * k:
            return 30.0
    return 0.0


@pytest.mark.parametrize("process_sum", [False, True])
def test_interleaved_modes_keep_their_own_pids_and_rounds(process_sum: bool) -> None:
    clock = FakeClock(0.0)
    probe = PidProbe(clock, a_or_b, process_sum=process_sum)
    sampler = Sampler(["cpu:0", "cpu:1"], 0.1, probe, clock=clock)
    sampler._wait = driven(clock, 7.55, interleaved(sampler))
    run_loop(sampler)
    sampler.stop()
    a, b = sampler.device_stats("a")[0], sampler.device_stats("b")[0]
    # Both modes' workers are sampled while both live, not only the last-started mode's ...
    assert probe.asked[20] == {11, 22} and probe.asked[-1] == {22}  # ... until a closes
    assert a.process_mem_peak_bytes == {"11": 110} and b.process_mem_peak_bytes == {"22": 220}
    # Each mode's statistics come from its own three rounds only: 5 samples each.
    assert (a.util_mean_pct, a.samples) == (90.0, 15) and (b.util_mean_pct, b.samples) == (30.0, 15)
    assert a.busy is True and b.busy is False
    # A mode's memory is its own processes', not its neighbour's nor other programs': on the
    # host (RSS), and on a GPU where NVML matched its pids.
    assert (a.mem_peak_bytes, b.mem_peak_bytes) == (110, 220)
    spans = sampler.results_section()["spans"]
    rounds = [(s["mode"], s["start_s"], s["end_s"]) for s in spans if s["phase"] == PHASE_ROUND]
    assert [m for m, _, _ in rounds] == ["a", "b"] * 3
    assert all(e1 <= s2 for (_, _, e1), (_, s2, _) in zip(rounds, rounds[1:], strict=False))


def test_a_short_round_gets_the_samples_of_its_own_time() -> None:
    # A round of 0.3 s from 0.97 to 1.27: the reads at 1.1, 1.2 and 1.3 cover it; the read at
    # 1.0 covers 0.9..1.0 (before it) although it was taken while the round ran.
    clock = FakeClock(0.0)

    def util(d: str, t: float) -> float:
        return 100.0 if 0.97 <= t - 0.05 < 1.27 else 0.0

    probe = ScriptedProbe(clock, util)
    events = [
        (0.97, lambda: sampler.mark("serial", PHASE_ROUND, 0)),
        (1.27, lambda: sampler.mark(None, PHASE_BETWEEN, None)),
    ]
    sampler = Sampler(["cpu:0", "cpu:1"], 0.1, probe, clock=clock, wait=driven(clock, 1.55, events))
    run_loop(sampler)
    stats = sampler.device_stats("serial")[0]
    assert stats.util_mean_pct == 100.0 and stats.samples == 3  # read-time tags gave 66.7
    assert stats.few_samples is True
    assert stats.mem_peak_bytes == 1000 + 12  # memory is an instant value: read at 1.0..1.2
    spans = sampler.results_section()["spans"]
    assert spans[1]["util_mean_pct"] == {"cpu:0": 100.0, "cpu:1": 100.0}
    assert spans[1]["util_samples"] == {"cpu:0": 3, "cpu:1": 3}


@pytest.mark.parametrize(("min_samples", "few"), [(10, False), (11, True)])
def test_few_samples_flag_follows_the_threshold(min_samples: int, few: bool) -> None:
    clock = FakeClock(0.0)
    probe = ScriptedProbe(clock, lambda d, t: 70.0)
    events = [
        (0.95, lambda: sampler.mark("serial", PHASE_ROUND, 0)),
        (1.95, lambda: sampler.mark(None, PHASE_BETWEEN, None)),
    ]
    sampler = Sampler(
        ["cpu:0", "cpu:1"], 0.1, probe, clock=clock, wait=driven(clock, 2.05, events),
        min_samples=min_samples,
    )
    run_loop(sampler)
    stats = sampler.device_stats("serial")[0]
    assert stats.samples == 10 and stats.few_samples is few
    assert sampler.device_stats("threaded")[0].few_samples is False  # no samples: unknown
    assert sampler.results_section()["min_samples"] == min_samples
