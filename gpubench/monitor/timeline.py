"""What the sampler's timeline says about one mode: which samples belong to which span, and the
per-device statistics of a mode's measured rounds.

Two kinds of values are attributed differently:

- *instant* values (memory, power, the energy counter, per-process memory) belong to the span
  that ran when they were read;
- *windowed* values describe a stretch of time that ends when they are read: host utilisation
  and GPM metrics cover the time since the previous sample, NVML's own timestamped utilisation
  samples cover the driver's window (1/6 s to 1 s). They belong to the span that ran at the
  *middle* of their window, so that a short round is not given its neighbour's numbers.

Statistics built from fewer than ``min_samples`` values are flagged (``few_samples``) rather
than reported as if they were solid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpubench.monitor_record import midpoints, span_at  # the one rule
from gpubench.results import PHASE_ROUND, DeviceStats, OtherProcess

MIN_SAMPLES = 10



def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class Snapshot:
    """A consistent copy of the sampler's data (taken under its lock)."""

    spans: list[dict[str, Any]]
    t: list[float]
    span: list[int]  # span of each polled sample at its read time
    cols: dict[str, dict[str, list[Any]]]
    procs: list[dict[str, dict[int, int]]]
    # per device: (window start, window end, %) of the driver's timestamped samples
    driver: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    # (sample index, device, pid, command name, % of the device) of other programs named
    others: list[tuple[int, str, int, str, float | None]] = field(default_factory=list)

    def starts(self) -> list[float]:
        return [s["start_s"] for s in self.spans]

    def windowed_spans(self) -> list[int | None]:
        starts = self.starts()
        return [span_at(starts, m) for m in midpoints(self.t)]

    def driver_spans(self, device: str) -> list[int | None]:
        starts = self.starts()
        return [span_at(starts, (a + b) / 2) for a, b, _ in self.driver.get(device, ())]


def span_summaries(snap: Snapshot) -> list[dict[str, Any]]:
    """Per span, per device: mean utilisation and how many samples it rests on (the driver's
    timestamped samples where the device has them, else the polled ones)."""
    out: list[dict[str, Any]] = [{"util_mean_pct": {}, "util_samples": {}} for _ in snap.spans]
    windowed = snap.windowed_spans()
    for d, polled in snap.cols.get("util", {}).items():
        if snap.driver.get(d):
            pairs = zip(snap.driver_spans(d), (v for _, _, v in snap.driver[d]), strict=True)
        else:
            pairs = zip(windowed, polled, strict=True)
        by_span: dict[int, list[float]] = {}
        for s, v in pairs:
            if s is not None and v is not None:
                by_span.setdefault(s, []).append(v)
        for s, values in by_span.items():
            out[s]["util_mean_pct"][d] = round(sum(values) / len(values), 1)
            out[s]["util_samples"][d] = len(values)
    return out


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def _load(values: Sequence[float]) -> float | None:
    """Other load over many windows: their mean, clamped at 0 (a window's value is signed)."""
    mean = _mean(values)
    return None if mean is None else max(0.0, mean)


def _other_in(snap: Snapshot, spans: set[int], devices: Sequence[str]) -> dict[str, list[float]]:
    """Per device, the other-load samples whose window's middle fell in ``spans``."""
    column = snap.cols.get("other_util", {})
    inside = [i for i, s in enumerate(snap.windowed_spans()) if s in spans]
    out: dict[str, list[float]] = {}
    for d in devices:
        col = column.get(d)
        values = [v for i in inside if (v := col[i]) is not None] if col else []
        if values:
            out[d] = values
    return out


def span_other_load(snap: Snapshot, span: int, devices: Sequence[str]) -> dict[str, float | None]:
    """Per device, other programs' mean load during one span (None: no sample fell in it)."""
    values = _other_in(snap, {span}, devices)
    return {d: _load(values.get(d, [])) for d in devices}


@dataclass(frozen=True)
class OtherLoadStats:
    """Other programs' load during a mode's measured rounds."""

    pct: dict[str, float]  # device -> mean % of its capacity (devices with samples only)
    processes: tuple[OtherProcess, ...]  # the heaviest, heaviest first


def mode_other_load(snap: Snapshot, mode: str, devices: Sequence[str]) -> OtherLoadStats:
    """Other programs' load on ``devices`` over ``mode``'s measured rounds (``round`` spans)
    and the processes named during them (each pid once, at its mean share)."""
    rounds = {
        i for i, s in enumerate(snap.spans) if s["mode"] == mode and s["phase"] == PHASE_ROUND
    }
    whole = _other_in(snap, rounds, devices)
    windowed = snap.windowed_spans()
    shares: dict[tuple[int, str, str], list[float]] = {}
    for i, d, pid, name, share in snap.others:
        if d in devices and windowed[i] in rounds:
            shares.setdefault((pid, name, d), []).append(-1.0 if share is None else share)
    processes = sorted(
        (
            OtherProcess(pid=pid, name=name, device=d,
                         pct=None if min(v) < 0 else round(sum(v) / len(v), 1))
            for (pid, name, d), v in shares.items()
        ),
        key=lambda p: -(p.pct or 0.0),
    )
    means = {d: m for d, vs in whole.items() if (m := _load(vs)) is not None}
    return OtherLoadStats(pct=means, processes=tuple(processes[:5]))


def mode_device_stats(
    snap: Snapshot,
    mode: str,
    devices: Sequence[str],
    mode_pids: Mapping[int, str],
    *,
    busy_threshold_pct: float,
    min_samples: int = MIN_SAMPLES,
    mem_is_process_sum: bool = False,
) -> tuple[DeviceStats, ...]:
    """Per device, what it did during ``mode``'s measured rounds (its ``round`` spans only)."""
    rounds = {
        i for i, s in enumerate(snap.spans) if s["mode"] == mode and s["phase"] == PHASE_ROUND
    }
    at_read = [i for i, s in enumerate(snap.span) if s in rounds]
    windowed = [i for i, s in enumerate(snap.windowed_spans()) if s in rounds]

    def values(col: str, d: str, idx: Sequence[int]) -> list[Any]:
        column = snap.cols.get(col, {}).get(d, [])
        return [v for i in idx if (v := column[i]) is not None]

    out = []
    for d in devices:
        driver = snap.driver.get(d) or []
        if driver:
            spans = snap.driver_spans(d)
            util = [v for (_, _, v), s in zip(driver, spans, strict=True) if s in rounds]
        else:
            util = values("util", d, windowed)
        peaks: dict[str, int] = {}
        own_mem: list[int] = []
        for i in at_read:
            in_sample = {
                pid: b for pid, b in snap.procs[i].get(d, {}).items() if mode_pids.get(pid) == d
            }
            for pid, b in in_sample.items():
                peaks[str(pid)] = max(b, peaks.get(str(pid), 0))
            if in_sample:
                own_mem.append(sum(in_sample.values()))
        # The host's "memory" is the watched processes' RSS: a mode's own, not its neighbours'.
        # A GPU's is its own processes' too where NVML matched them (their contexts and
        # caches: not other users' jobs, the parent's context or the other modes' workers);
        # where it matched none (another pid namespace), the device's total less what the
        # other modes' processes alive beside this mode held at the same reading.
        total = snap.cols.get("mem", {}).get(d, [])
        mem = own_mem if mem_is_process_sum or own_mem else [
            v - sum(b for pid, b in snap.procs[i].get(d, {}).items() if mode_pids.get(pid) != d)
            for i in at_read if (v := total[i]) is not None
        ]
        power = values("power_w", d, at_read)
        sm = values("sm_active", d, windowed)
        occupancy = values("sm_occupancy", d, windowed)
        energies = []
        for s in sorted(rounds):
            in_span = [i for i in at_read if snap.span[i] == s]
            e = span_energy(
                snap.spans[s],
                [snap.t[i] for i in in_span],
                [snap.cols["energy_j"][d][i] for i in in_span],
                [snap.cols["power_w"][d][i] for i in in_span],
            )
            if e is not None:
                energies.append(e)
        mean = sum(util) / len(util) if util else None
        n = len(util) if util else len(at_read)
        out.append(
            DeviceStats(
                device=d,
                busy=None if mean is None else mean >= busy_threshold_pct,
                util_mean_pct=_round(mean, 1),
                util_p95_pct=_round(percentile(util, 95), 1) if util else None,
                mem_peak_bytes=max(mem) if mem else None,
                samples=n,
                process_mem_peak_bytes=peaks,
                energy_per_round_j=_round(sum(energies) / len(energies), 3) if energies else None,
                power_mean_w=_round(sum(power) / len(power), 1) if power else None,
                sm_active_mean_pct=_round(sum(sm) / len(sm), 1) if sm else None,
                sm_occupancy_mean_pct=_round(sum(occupancy) / len(occupancy), 1)
                if occupancy
                else None,
                few_samples=0 < len(util) < min_samples,
            )
        )
    return tuple(out)


def _round(v: Any, digits: int | None) -> Any:
    if v is None or digits is None:
        return v
    return round(float(v), digits)


def span_energy(
    span: Mapping[str, Any],
    t: Sequence[float],
    energy: Sequence[float | None],
    power: Sequence[float | None],
) -> float | None:
    """Energy of one span: the counter's rate between the span's first and last samples
    times the span's length; else mean power times length."""
    length = span["end_s"] - span["start_s"]
    pairs = [(ti, e) for ti, e in zip(t, energy, strict=True) if e is not None]
    if len(pairs) >= 2 and pairs[-1][0] > pairs[0][0]:
        rate = (pairs[-1][1] - pairs[0][1]) / (pairs[-1][0] - pairs[0][0])
        return rate * length
    watts = [p for p in power if p is not None]
    return sum(watts) / len(watts) * length if watts else None
