"""The sampler: a background thread that samples every device on a drift-free schedule.

Tick ``k`` is due at ``t0 + k * interval``, whatever the previous samples cost; a tick that is
already past when the thread wakes (a slow sample, a busy machine) is skipped and counted, not
made up. The harness thread only ever takes the sampler's lock for a few list operations
(``mark``, ``watch_pids``); every backend query runs on the sampler thread.

Samples are stored as columns (one list per field and device), which is also how they go into
the results file: ten minutes at 10 Hz is 6000 numbers per column. The NVML backend also hands
over the driver's own timestamped utilisation samples; every sample is attributed to the span
(mode, phase, round, from the harness's marks) that ran at its time, see
:mod:`gpubench.monitor.timeline`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gpubench.monitor.probe import Probe, Reading
from gpubench.monitor.timeline import (
    MIN_SAMPLES,
    OtherLoadStats,
    Snapshot,
    mode_device_stats,
    mode_other_load,
    span_other_load,
    span_summaries,
)
from gpubench.results import (
    NOTE_SAMPLES_FAILED,
    NOTE_SEPARATOR,
    NOTE_TICKS_SKIPPED,
    PHASE_BETWEEN,
    DeviceStats,
)

log = logging.getLogger(__name__)

BUSY_THRESHOLD_PCT = 50.0

# Reading attribute -> timeline column, with the rounding it is stored with.
_COLUMNS: dict[str, tuple[str, int | None]] = {
    "util_pct": ("util", 1),
    "mem_bytes": ("mem", None),
    "mem_reserved_bytes": ("mem_reserved", None),
    "power_w": ("power_w", 1),
    "energy_j": ("energy_j", 3),
    "sm_active_pct": ("sm_active", 1),
    "sm_occupancy_pct": ("sm_occupancy", 1),
    "own_util_pct": ("own_util", 1),
    "other_util_pct": ("other_util", 1),
}
_ALWAYS = ("util", "mem")


def next_tick(t0: float, interval: float, now: float, last: int) -> int:
    """The first tick index after ``last`` that is not yet past at ``now``."""
    return max(last + 1, math.floor((now - t0) / interval) + 1)


def _yield_to_workers() -> None:
    """Give the sampling thread the lowest CPU priority (Linux: nice is per thread).

    When every core is busy with workers, a normal-priority sampler preempts one of them at
    each tick, and the cache it disturbs costs more than the sample itself (multi-gpu on two
    busy slots at 0.01 s: +4%). At nice 19 it runs in the gaps of the scheduler's slices,
    a few milliseconds late at worst; the drift-free schedule and the recorded sample times
    keep the timeline right.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not Linux, or not allowed: sample at normal priority
        pass


class Sampler:
    """Samples ``devices`` every ``interval_s`` through ``probe``.

    ``clock`` and ``wait`` are injectable for tests: ``wait(timeout)`` sleeps at most
    ``timeout`` seconds and returns ``True`` when the sampler must stop.
    """

    def __init__(
        self,
        devices: Sequence[str],
        interval_s: float,
        probe: Probe,
        *,
        clock: Callable[[], float],
        note: str | None = None,
        busy_threshold_pct: float = BUSY_THRESHOLD_PCT,
        wait: Callable[[float], bool] | None = None,
        wall: Callable[[], float] = time.time,
        min_samples: int = MIN_SAMPLES,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"sample interval must be > 0 s, got {interval_s!r}")
        self.devices = tuple(devices)
        self.interval_s = float(interval_s)
        self.busy_threshold_pct = busy_threshold_pct
        self.min_samples = min_samples
        self.t0: float | None = None
        self._wall = wall
        self._wall0 = 0.0  # wall-clock time at t0: NVML's sample timestamps are wall-clock
        self.missed_ticks = 0
        self._probe = probe
        self._clock = clock
        self._note = note
        self._stop_event = threading.Event()
        self._wait = wait or self._stop_event.wait
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped_at: float | None = None
        self._spans: list[dict[str, Any]] = []
        self._mode_pids: dict[str, dict[int, str]] = {}
        self._watching: set[str] = set()  # modes whose processes are still sampled
        self._t: list[float] = []
        self._span: list[int] = []
        self._cols: dict[str, dict[str, list[Any]]] = {
            col: {d: [] for d in self.devices} for col, _ in _COLUMNS.values()
        }
        self._proc: list[dict[str, dict[int, int]]] = []
        # (sample index, device, pid, command name, % of the device) of other programs
        self._others: list[tuple[int, str, int, str, float | None]] = []
        self._driver: dict[str, list[tuple[float, float, float]]] = {d: [] for d in self.devices}
        self._failures = 0
        self._read_s = 0.0  # wall time spent in the backend, for the sampler's own cost
        self._read_cpu_s = 0.0  # and the CPU time it took (its thread runs at nice 19)

    # --- the harness's side (short locks only) -------------------------------------------

    def start(self, *, background: bool = True) -> None:
        """Set ``t0`` and start the thread (``background=False``: the caller drives
        :meth:`sample` or :meth:`run` itself, as tests do)."""
        if self.t0 is not None:
            raise RuntimeError("sampler already started")
        self.t0 = self._clock()
        self._wall0 = self._wall()
        self._spans.append(_span(None, PHASE_BETWEEN, None, 0.0))
        if background:
            self._thread = threading.Thread(target=self.run, name="gpubench-sampler", daemon=True)
            self._thread.start()

    def mark(self, mode: str | None, phase: str, round_index: int | None) -> int:
        """Close the current span and open one for (mode, phase, round) now; its index."""
        if self.t0 is None:
            raise RuntimeError("start() the sampler before mark()")
        with self._lock:
            now = self._clock() - self.t0
            self._spans[-1]["end_s"] = now
            self._spans.append(_span(mode, phase, round_index, now))
            return len(self._spans) - 1

    def retag(self, span: int, phase: str) -> None:
        """Give an earlier span another phase (a round measured again: ``replaced``), so that
        no statistic of measured rounds counts it."""
        with self._lock:
            self._spans[span]["phase"] = phase

    def other_load(self, span: int) -> dict[str, float | None]:
        """Per device, other programs' mean load during ``span`` so far (None: not measured)."""
        with self._lock:
            snap = self._snapshot()
        return span_other_load(snap, span, self.devices)

    def watch_pids(self, mode: str, pids: Mapping[int, str]) -> None:
        """From now on, sample ``pids`` (pid -> device id) as ``mode``'s processes.

        Every mode's processes are sampled until :meth:`unwatch_pids` (with ``--interleave``
        several modes' workers live at once); a mode's statistics use its own pids only.
        """
        with self._lock:
            self._mode_pids.setdefault(mode, {}).update(pids)
            self._watching.add(mode)

    def unwatch_pids(self, mode: str) -> None:
        """``mode``'s processes are gone (it closed): stop sampling them."""
        with self._lock:
            self._watching.discard(mode)

    def _watched(self) -> dict[str, list[int]]:
        by_device: dict[str, set[int]] = {}
        for mode in self._watching:
            for pid, dev in self._mode_pids[mode].items():
                by_device.setdefault(dev, set()).add(pid)
        return {dev: sorted(pids) for dev, pids in by_device.items()}

    def stop(self) -> None:
        if self.t0 is None or self._stopped_at is not None:
            return
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._stopped_at = self._clock() - self.t0
            self._spans[-1]["end_s"] = self._stopped_at
        self._probe.close()

    # --- the sampler thread ---------------------------------------------------------------

    def run(self) -> None:
        """The loop: a sample now, then one at every tick until stopped."""
        assert self.t0 is not None
        _yield_to_workers()
        tick = 0
        self.sample()
        while True:
            now = self._clock()
            nxt = next_tick(self.t0, self.interval_s, now, tick)
            self.missed_ticks += nxt - tick - 1
            tick = nxt
            if self._wait(max(0.0, self.t0 + tick * self.interval_s - now)):
                return
            self.sample()

    def sample(self) -> None:
        assert self.t0 is not None
        with self._lock:
            t = self._clock() - self.t0
            span = len(self._spans) - 1
            by_device = self._watched()
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            readings = self._probe.read(by_device)
        except Exception:  # a backend bug must not end the monitoring of a long run
            self._failures += 1
            if self._failures == 1:
                log.exception(
                    "monitor backend %s failed; sample recorded as null", self._probe.backend
                )
            readings = {}
        self._read_s += time.perf_counter() - started
        self._read_cpu_s += time.thread_time() - cpu
        with self._lock:
            self._t.append(t)
            self._span.append(span)
            procs: dict[str, dict[int, int]] = {}
            for d in self.devices:
                r = readings.get(d) or Reading()
                for attr, (col, _) in _COLUMNS.items():
                    self._cols[col][d].append(getattr(r, attr))
                if r.process_mem_bytes:
                    procs[d] = dict(r.process_mem_bytes)
                for pid, name, pct in r.other_processes:
                    self._others.append((len(self._t) - 1, d, pid, name, pct))
                for start, end, value in r.util_samples:
                    # Driver samples from before the sampler started are not this run's.
                    if (start + end) / 2 >= self._wall0:
                        self._driver[d].append((start - self._wall0, end - self._wall0, value))
            self._proc.append(procs)

    # --- results --------------------------------------------------------------------------

    def _spans_now(self) -> list[dict[str, Any]]:
        spans = [dict(s) for s in self._spans]
        if spans and spans[-1]["end_s"] is None and self.t0 is not None:
            spans[-1]["end_s"] = self._clock() - self.t0
        return spans

    def _snapshot(self) -> Snapshot:
        """A copy of everything measured so far (call with the lock held)."""
        return Snapshot(
            spans=self._spans_now(),
            t=list(self._t),
            span=list(self._span),
            cols={col: {d: list(vs) for d, vs in per.items()} for col, per in self._cols.items()},
            procs=list(self._proc),
            driver={d: list(vs) for d, vs in self._driver.items() if vs},
            others=list(self._others),
        )

    def results_section(self) -> dict[str, Any]:
        """The ``monitor`` object of the results file (see the module docstring)."""
        with self._lock:
            snap = self._snapshot()
        timeline: dict[str, Any] = {"t": [round(t, 3) for t in snap.t], "span": snap.span}
        measured = []
        for col, digits in _COLUMNS.values():
            per_dev = snap.cols[col]
            if col not in _ALWAYS and all(v is None for vs in per_dev.values() for v in vs):
                continue
            measured.append(col)
            timeline[col] = {d: [_round(v, digits) for v in vs] for d, vs in per_dev.items()}
        notes = list(self._probe.notes())
        if self._note:
            notes.insert(0, self._note)
        if self.missed_ticks:
            notes.append(NOTE_TICKS_SKIPPED.format(n=self.missed_ticks))
        if self._failures:
            notes.append(NOTE_SAMPLES_FAILED.format(n=self._failures))
        if snap.driver:
            measured.append("util_samples")
        if snap.others:
            measured.append("other_processes")
        fields = {
            k: v for k, v in self._probe.fields.items() if k in measured or k == "process_mem"
        }
        summaries = span_summaries(snap)
        section: dict[str, Any] = {
            "backend": self._probe.backend,
            "interval_s": self.interval_s,
            "note": NOTE_SEPARATOR.join(notes) if notes else None,
            "busy_threshold_pct": self.busy_threshold_pct,
            "min_samples": self.min_samples,
            "devices": list(self.devices),
            "fields": fields,
            "missed_ticks": self.missed_ticks,
            "sample_cost_ms": round(1000 * self._read_s / len(snap.t), 3) if snap.t else None,
            "sample_cpu_ms": round(1000 * self._read_cpu_s / len(snap.t), 3) if snap.t else None,
            "timeline": timeline,
            "spans": [
                {
                    **s,
                    "start_s": round(s["start_s"], 3),
                    "end_s": round(s["end_s"], 3),
                    **{k: v for k, v in summary.items() if v},
                }
                for s, summary in zip(snap.spans, summaries, strict=True)
            ],
        }
        if snap.others:
            section["other_processes"] = [
                {"t": round(snap.t[i], 3), "device": d, "pid": pid, "name": name, "pct": pct}
                for i, d, pid, name, pct in snap.others
            ]
        if snap.driver:
            # The driver's timestamped samples: window start and end (run-relative seconds),
            # kernel-active %, and the span each is attributed to (at its window's middle).
            section["util_samples"] = {
                d: {
                    "start_s": [round(a, 3) for a, _, _ in vs],
                    "t": [round(b, 3) for _, b, _ in vs],
                    "util": [round(v, 1) for _, _, v in vs],
                    "span": snap.driver_spans(d),
                }
                for d, vs in snap.driver.items()
            }
        return section

    def device_stats(self, mode: str) -> tuple[DeviceStats, ...]:
        """Per device, what it did during ``mode``'s measured rounds (phase ``round``)."""
        with self._lock:
            snap = self._snapshot()
            pids = dict(self._mode_pids.get(mode, {}))
        return mode_device_stats(
            snap,
            mode,
            self.devices,
            pids,
            busy_threshold_pct=self.busy_threshold_pct,
            min_samples=self.min_samples,
            mem_is_process_sum=bool(getattr(self._probe, "mem_is_process_sum", False)),
        )

    def mode_other_load(self, mode: str, devices: Sequence[str]) -> OtherLoadStats:
        """Other programs' load on ``devices`` during ``mode``'s measured rounds."""
        with self._lock:
            snap = self._snapshot()
        return mode_other_load(snap, mode, devices)


def _span(mode: str | None, phase: str, round_index: int | None, start: float) -> dict[str, Any]:
    return {"mode": mode, "phase": phase, "round": round_index, "start_s": start, "end_s": None}


def _round(v: Any, digits: int | None) -> Any:
    if v is None or digits is None:
        return v
    return round(float(v), digits)
