"""The run as one Chrome trace event file (ui.perfetto.dev and chrome://tracing open it).

Made from the :class:`Results` alone. Processes: per mode, the parent (its round slices) and
one per worker (the mode in its name); threads: one track per client running at once in
that worker (clients go to the first free track, so slices on a track never overlap).
A client's slice holds one slice per phase, each as long as the results' phase time: data,
copy and compute alternate batch by batch, so the phases are drawn as their totals, one
after another in ``PHASES`` order. A ``devices`` process carries the monitor's counters
(utilisation, the run's own and other programs' share, memory, power, SM activity).

Every time is on the monitor's clock (``RoundRecord.start_s``; a client's ``start_s`` counts
from its round's start): microseconds since the monitor's ``t0``.

A run with ``--profile-ops`` has one more round per mode (``ModeResult.profiled``), drawn after
its measured ones as ``profiled round``, with the operators torch.profiler recorded in each
worker merged under that worker's process, one track per thread (and per GPU stream). The
profiler's timestamps are microseconds after its trace's ``baseTimeNanoseconds`` (wall-clock
nanoseconds since the epoch); the round's ``wall_start_ns`` is the wall clock at its
``start_s``, which puts them on the monitor's clock. Only slices are kept (flows, instants and
the profiler's own spans have no place here), each cut at the end of the slice it starts in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpubench.output import write_atomic
from gpubench.results import (
    PHASE_REPLACED,
    PHASE_ROUND,
    PHASE_WARMUP,
    PHASES,
    ClientTiming,
    ModeResult,
    OpTrace,
    ProfiledRound,
    Results,
    RoundRecord,
)

US = 1e6  # trace times are microseconds
PARENT_TRACK = "rounds"
DEVICES = "devices"
# Monitor timeline columns drawn as counters: column -> (counter name, scale, unit).
COUNTERS: dict[str, tuple[str, float, str]] = {
    "util": ("util", 1.0, "%"),
    "own_util": ("own util", 1.0, "%"),
    "other_util": ("other util", 1.0, "%"),
    "mem": ("mem", 1 / 2**20, "MiB"),
    "mem_reserved": ("mem reserved", 1 / 2**20, "MiB"),
    "power_w": ("power", 1.0, "W"),
    "sm_active": ("SM active", 1.0, "%"),
    "sm_occupancy": ("SM occupancy", 1.0, "%"),
}

Event = dict[str, Any]

PROFILED = "profiled round"
# The profiler's slices drawn: operators and the CUDA runtime on the host; kernels, copies
# and annotations on a GPU's streams.
HOST_OPS = ("cpu_op", "user_annotation", "cuda_runtime", "cuda_driver")
DEVICE_OPS = ("kernel", "gpu_memcpy", "gpu_memset", "gpu_user_annotation")


@dataclass
class _Ids:
    """Process and thread ids, given out in the order names are first asked for."""

    pids: dict[str, int] = field(default_factory=dict)
    tids: dict[tuple[int, str], int] = field(default_factory=dict)
    meta: list[Event] = field(default_factory=list)

    def pid(self, name: str) -> int:
        if name not in self.pids:
            pid = self.pids[name] = len(self.pids) + 1
            self.meta.append(_meta("process_name", pid, 0, name))
            self.meta.append(_meta("process_sort_index", pid, 0, pid, key="sort_index"))
        return self.pids[name]

    def tid(self, pid: int, name: str) -> int:
        key = (pid, name)
        if key not in self.tids:
            tid = self.tids[key] = sum(1 for p, _ in self.tids if p == pid) + 1
            self.meta.append(_meta("thread_name", pid, tid, name))
            self.meta.append(_meta("thread_sort_index", pid, tid, tid, key="sort_index"))
        return self.tids[key]


def _meta(name: str, pid: int, tid: int, value: Any, key: str = "name") -> Event:
    return {"ph": "M", "name": name, "pid": pid, "tid": tid, "args": {key: value}}


def _slice(name: str, pid: int, tid: int, start_s: float, dur_s: float,
           args: dict[str, Any], cat: str) -> Event:
    return {"ph": "X", "name": name, "cat": cat, "pid": pid, "tid": tid,
            "ts": round(start_s * US, 3), "dur": round(max(dur_s, 0.0) * US, 3), "args": args}


def round_starts(results: Results, mode: ModeResult) -> list[float]:
    """Each round's start on the monitor's clock: recorded, else the monitor's span of it,
    else the mode's rounds laid end to end after the modes before it."""
    spans = _round_spans(results, mode.name)
    starts: list[float] = []
    for r, span in zip(mode.rounds, spans, strict=True):
        if r.start_s is not None:
            starts.append(r.start_s)
        elif span is not None:
            starts.append(span)
        elif starts:
            before = mode.rounds[len(starts) - 1]
            starts.append(starts[-1] + before.time_s + (before.aggregate_s or 0.0))
        else:
            starts.append(0.0)
    return starts


def _round_spans(results: Results, mode: str) -> list[float | None]:
    """The monitor's span start of each of ``mode``'s rounds, in order (None: no monitor)."""
    m = results.mode(mode)
    assert m is not None
    spans = [s for s in results.monitor_record.spans_of(mode)
             if s.phase in (PHASE_WARMUP, PHASE_ROUND)]
    if len(spans) != len(m.rounds):
        return [None] * len(m.rounds)
    return [s.start_s for s in spans]


def assign_tracks(clients: Sequence[ClientTiming]) -> list[int]:
    """The track of each client (in ``clients``' order): the first whose last client ended
    by the time it starts."""
    ends: list[float] = []
    out = [0] * len(clients)
    for i in sorted(range(len(clients)), key=lambda i: (clients[i].start_s, clients[i].client)):
        c = clients[i]
        track = next((t for t, end in enumerate(ends) if end <= c.start_s), len(ends))
        if track == len(ends):
            ends.append(0.0)
        ends[track] = c.start_s + client_length(c)
        out[i] = track
    return out


def client_length(c: ClientTiming) -> float:
    """The client's slice: start to end, or its phases' sum where that is longer."""
    return max(c.end_s - c.start_s, sum(c.phases.values()))


def ordered_phases(c: ClientTiming) -> list[tuple[str, float]]:
    """The client's phases in PHASES order, a mode's own after them (a results file keeps
    its keys sorted)."""
    rank = {p: i for i, p in enumerate(PHASES)}
    return sorted(c.phases.items(), key=lambda kv: rank.get(kv[0], len(rank)))


def _worker_name(mode: ModeResult, worker: int, device: str) -> str:
    return f"{mode.name} · worker {worker} ({device})"


def _client_events(ids: _Ids, mode: ModeResult, r: RoundRecord, start: float,
                   label: str) -> Iterator[Event]:
    tracks = assign_tracks(r.clients)
    for c, track in zip(r.clients, tracks, strict=True):
        pid = ids.pid(_worker_name(mode, c.worker, c.device))
        tid = ids.tid(pid, f"client track {track}")
        args: dict[str, Any] = {"mode": mode.name, "round": label, "client": c.client,
                                "device": c.device, "worker": c.worker, "samples": c.samples}
        at = start + c.start_s
        length = client_length(c)
        whole = dict(args)
        if c.wait_s is not None:
            whole["wait_s"] = round(c.wait_s, 6)
            compute = c.phases.get("compute")
            if compute:
                whole["wait_of_compute"] = round(c.wait_s / compute, 4)
        yield _slice(f"client {c.client}", pid, tid, at, length, whole, "client")
        for phase, seconds in ordered_phases(c):
            yield _slice(phase, pid, tid, at, seconds, {**args, "phase": phase}, "phase")
            at += seconds


def _wait_counters(ids: _Ids, mode: ModeResult, starts: Sequence[float]) -> Iterator[Event]:
    """Per worker, the mean number of its training threads waiting for a CPU (``wait_s``
    over each client's time), summed over its clients running at once."""
    steps: dict[str, list[tuple[float, float]]] = {}
    for r, start in zip(mode.rounds, starts, strict=True):
        for c in r.clients:
            length = client_length(c)
            if c.wait_s is None or length <= 0:
                continue
            rate = c.wait_s / length
            at = start + c.start_s
            name = _worker_name(mode, c.worker, c.device)
            steps.setdefault(name, []).extend([(at, rate), (at + length, -rate)])
    for name, changes in steps.items():
        pid = ids.pid(name)
        level = 0.0
        for t, delta in sorted(changes):
            level += delta
            yield {"ph": "C", "name": "waiting threads", "pid": pid, "tid": 0,
                   "ts": round(t * US, 3), "args": {"waiting": round(max(level, 0.0), 4)}}


def _round_label(r: RoundRecord, number: int) -> str:
    return f"warm-up {number}" if r.warmup else f"round {number}"


def _mode_events(ids: _Ids, results: Results, mode: ModeResult,
                 offset: float = 0.0) -> Iterator[Event]:
    starts = [offset + s for s in round_starts(results, mode)]
    kept = {int(e["step"]) for e in results.config.remeasured_sets or () if e.get("kept")}
    parent = ids.pid(f"{mode.name} · parent")
    track = ids.tid(parent, PARENT_TRACK)
    for worker, device in sorted({(c.worker, c.device) for r in mode.rounds for c in r.clients}):
        ids.pid(_worker_name(mode, worker, device))
    warm = measured = 0
    for r, start in zip(mode.rounds, starts, strict=True):
        if r.warmup:
            warm += 1
        else:
            measured += 1
        label = _round_label(r, warm if r.warmup else measured)
        args: dict[str, Any] = {"mode": mode.name, "round": label, "step": r.index,
                                "warmup": r.warmup, "clients": len(r.clients)}
        if r.index in kept and not r.warmup:
            args["disturbed"] = "kept: other programs' load; the re-measuring bound was reached"
        if r.other_load_pct:
            args["other_load_pct"] = dict(r.other_load_pct)
        yield _slice(label, parent, track, start, r.time_s, args, "round")
        if r.aggregate_s is not None:
            yield _slice("aggregate (parent)", parent, track, start + r.time_s, r.aggregate_s,
                         {"mode": mode.name, "round": label}, "aggregate")
        yield from _client_events(ids, mode, r, start, label)
    if not offset:
        yield from _replaced_rounds(ids, results, mode, parent, track)
    if mode.profiled is not None:
        yield from _profiled_events(ids, mode, mode.profiled, offset, parent, track)
    yield from _wait_counters(ids, mode, starts)


def _profiled_events(ids: _Ids, mode: ModeResult, p: ProfiledRound, offset: float, pid: int,
                     tid: int) -> Iterator[Event]:
    """The profiled round, its clients, and each worker's profiler slices under it."""
    start = offset + (p.round.start_s or 0.0)
    args: dict[str, Any] = {"mode": mode.name, "round": PROFILED, "step": p.round.index,
                            "profiled": True, "clients": len(p.round.clients)}
    if p.cost is not None:
        args["profiler_cost"] = round(p.cost, 4)
    yield _slice(PROFILED, pid, tid, start, p.round.time_s, args, "round")
    yield from _client_events(ids, mode, p.round, start, PROFILED)
    for t in p.traces:
        profile = read_profile(t)
        if profile is None:
            continue
        worker = ids.pid(_worker_name(mode, t.worker, t.device))
        shift = profiler_shift_us(profile, p.wall_start_ns, start)
        yield from op_events(ids, profile, shift, worker,
                             {"mode": mode.name, "round": PROFILED, "worker": t.worker})


def read_profile(trace: OpTrace) -> dict[str, Any] | None:
    """A worker's profiler trace (None: gone, or not a Chrome trace)."""
    try:
        data = json.loads(Path(trace.path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("traceEvents"), list) else None


def profiler_shift_us(profile: Mapping[str, Any], wall_start_ns: int, start_s: float) -> float:
    """What to add to a profiler event's ``ts`` to put it on the trace's clock: torch's ``ts``
    counts microseconds after ``baseTimeNanoseconds`` (epoch), and the round that started at
    the wall clock's ``wall_start_ns`` is drawn at ``start_s`` (seconds on the monitor's clock)."""
    base_ns = int(profile.get("baseTimeNanoseconds") or 0)
    return (base_ns - wall_start_ns) / 1e3 + start_s * US


def op_events(ids: _Ids, profile: Mapping[str, Any], shift_us: float, pid: int,
              args: dict[str, Any]) -> list[Event]:
    """The profiler's slices, shifted by ``shift_us``, under process ``pid``: a track per
    thread (``ops · thread N``) and per GPU stream (``ops · GPU D stream S``)."""
    tracks: dict[str, list[Event]] = {}
    for e in profile.get("traceEvents") or ():
        cat = e.get("cat") if isinstance(e, dict) and e.get("ph") == "X" else None
        if cat not in HOST_OPS + DEVICE_OPS:
            continue
        try:
            ts, dur = float(e["ts"]) + shift_us, float(e.get("dur", 0.0))
        except (KeyError, TypeError, ValueError):
            continue
        if ts < 0 or not dur >= 0:
            continue
        where = (f"ops · GPU {e.get('pid')} stream {e.get('tid')}" if cat in DEVICE_OPS
                 else f"ops · thread {e.get('tid')}")
        tracks.setdefault(where, []).append(
            {"ph": "X", "name": str(e.get("name") or cat), "cat": cat, "pid": pid,
             "ts": round(ts, 3), "dur": round(dur, 3), "args": dict(args)})
    out: list[Event] = []
    for where, slices in tracks.items():
        tid = ids.tid(pid, where)
        for e in nested(slices):
            e["tid"] = tid
            out.append(e)
    return out


def nested(slices: Sequence[Event]) -> list[Event]:
    """The slices of one track, each cut at the end of the slice it starts in (Perfetto
    drops one that overlaps its neighbour partially); one left with nothing is dropped."""
    out: list[Event] = []
    ends: list[float] = []  # the open slices' ends
    for e in sorted(slices, key=lambda e: (e["ts"], -e["dur"])):
        while ends and ends[-1] <= e["ts"]:
            ends.pop()
        if ends and e["ts"] + e["dur"] > ends[-1]:
            e["dur"] = round(ends[-1] - e["ts"], 3)
            if e["dur"] <= 0:
                continue
        ends.append(e["ts"] + e["dur"])
        out.append(e)
    return out


def _profiled_metadata(results: Results) -> dict[str, Any]:
    """Per profiled mode: its profiled round against its median measured one, and its
    workers' profiler traces that could not be read."""
    out: dict[str, Any] = {}
    for m in results.modes:
        p = m.profiled
        if p is None:
            continue
        out[m.name] = {
            "time_s": round(p.round.time_s, 6),
            "median_round_s": None if p.median_round_s is None else round(p.median_round_s, 6),
            "profiler_cost": None if p.cost is None else round(p.cost, 4),
            "traces": len(p.traces),
            "unreadable": [t.path for t in p.traces if read_profile(t) is None],
        }
    return out


def _counterfactual_groups(results: Results) -> list[tuple[str, ...]]:
    """The rows of each counterfactual run (``config.counterfactuals``), in order."""
    groups = results.config.get("counterfactuals") or ()
    return [tuple(str(m) for m in g.get("modes") or ()) for g in groups if isinstance(g, dict)]


def _end_s(events: Sequence[Event]) -> float:
    return max((e["ts"] + e.get("dur", 0.0) for e in events), default=0.0) / US


def _replaced_rounds(ids: _Ids, results: Results, mode: ModeResult, pid: int,
                     tid: int) -> Iterator[Event]:
    """Rounds measured again (their set ran beside other programs' load): the monitor's
    spans of them, marked; none of their clients is recorded."""
    for s in results.monitor_record.spans_of(mode.name, PHASE_REPLACED):
        yield _slice("replaced round", pid, tid, s.start_s, s.length_s,
                     {"mode": mode.name, "round": s.round, "replaced": True,
                      "why": "measured again: other programs' load"}, "round")


def _device_events(ids: _Ids, results: Results) -> Iterator[Event]:
    timeline = results.monitor_record.timeline
    for column, (label, scale, unit) in COUNTERS.items():
        for device, values in timeline.columns.get(column, {}).items():
            pid = ids.pid(f"{DEVICES} ({device})")
            for t, v in zip(timeline.t, values, strict=True):
                if v is None:
                    continue
                yield {"ph": "C", "name": f"{label} ({unit})", "pid": pid, "tid": 0,
                       "ts": round(t * US, 3), "args": {label: round(v * scale, 3)}}


def build_trace(results: Results) -> dict[str, Any]:
    """The trace of ``results`` as a JSON object (``traceEvents`` and what they show)."""
    ids = _Ids()
    groups = _counterfactual_groups(results)
    later = {m for g in groups for m in g}
    events: list[Event] = []
    for mode in results.modes:
        if mode.name not in later:
            events.extend(_mode_events(ids, results, mode))
    events.extend(_device_events(ids, results))
    # Counterfactual rows ran after the run, each group on a monitor clock of its own: drawn
    # one group after another from the run's end.
    for group in groups:
        offset = _end_s(events)
        for mode in (m for m in results.modes if m.name in group):
            events.extend(_mode_events(ids, results, mode, offset))
    events.sort(key=lambda e: (e["ts"], e["pid"], e["tid"], -e.get("dur", 0)))
    other: dict[str, Any] = {
        "command": results.command,
        "created_utc": results.created_utc,
        "tool_version": results.tool_version,
        "clock": "microseconds since the monitor's t0",
        "phases": "each phase's total in the client, drawn one after another",
    }
    if results.config.get("profile_ops"):
        other["profiled_rounds"] = _profiled_metadata(results)
        other["not_profiled"] = [m.name for m in results.modes if m.ok and m.profiled is None]
    return {"traceEvents": ids.meta + events, "displayTimeUnit": "ms", "otherData": other}


def format_trace(results: Results) -> str:
    return json.dumps(build_trace(results), ensure_ascii=False, separators=(",", ":")) + "\n"


def write_trace(results: Results, path: str | os.PathLike[str]) -> Path:
    """Write the trace of ``results`` to ``path`` (atomically)."""
    return write_atomic(path, format_trace(results))


def trace_path(results_path: str | os.PathLike[str]) -> Path:
    """Where a results file's trace goes by default: beside it, ``<name>.trace.json``."""
    return Path(results_path).with_suffix(".trace.json")
