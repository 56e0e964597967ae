"""A structural check of a Chrome trace event file, applied to every trace the tests write.

Every event has what its phase needs (``ph``, ``pid``, ``tid``, ``ts`` but for metadata,
``dur`` >= 0 for complete slices, ``args`` for counters); every process and track used is
named; complete slices on one track nest or do not overlap (Perfetto drops a JSON slice that
overlaps its neighbour partially); and, given the results, every client's phase slices add
up to its recorded phases (within 2% or 1 ms).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from gpubench.results import Results

EPS_US = 0.01  # rounding of ts and dur to thousandths of a microsecond, twice


def check_trace(trace: dict[str, Any], results: Results | None = None) -> None:
    events = trace["traceEvents"]
    assert isinstance(events, list) and events, "no traceEvents"
    named_pids = {e["pid"] for e in events if e.get("ph") == "M" and e["name"] == "process_name"}
    named_tids = {(e["pid"], e["tid"]) for e in events
                  if e.get("ph") == "M" and e["name"] == "thread_name"}
    tracks: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        assert e.get("ph") in ("M", "X", "C"), f"unexpected phase in {e}"
        assert isinstance(e.get("pid"), int) and isinstance(e.get("tid"), int), e
        assert isinstance(e.get("name"), str) and e["name"], e
        if e["ph"] == "M":
            assert "args" in e, e
            continue
        assert isinstance(e.get("ts"), (int, float)) and e["ts"] >= 0, e
        assert e["pid"] in named_pids, f"process {e['pid']} has no name"
        if e["ph"] == "X":
            assert isinstance(e.get("dur"), (int, float)) and e["dur"] >= 0, e
            assert (e["pid"], e["tid"]) in named_tids, f"track of {e} has no name"
            tracks[(e["pid"], e["tid"])].append(e)
        else:
            assert e["args"] and all(isinstance(v, (int, float)) for v in e["args"].values()), e
    for key, slices in tracks.items():
        check_nesting(key, slices)
    if results is not None:
        check_phase_sums(events, results)


def check_nesting(key: tuple[int, int], slices: list[dict[str, Any]]) -> None:
    """Slices on one track either nest in one another or do not overlap."""
    stack: list[float] = []  # ends of the open slices
    for e in sorted(slices, key=lambda e: (e["ts"], -e["dur"])):
        start, end = e["ts"], e["ts"] + e["dur"]
        while stack and stack[-1] <= start + EPS_US:
            stack.pop()
        assert not stack or end <= stack[-1] + EPS_US, (
            f"slice {e['name']} {e.get('args')} on track {key} overlaps its parent partially "
            f"({start}..{end}, parent ends at {stack[-1]})")
        stack.append(end)


def check_phase_sums(events: list[dict[str, Any]], results: Results) -> None:
    """Each client round's phase slices add up to its phases in the results."""
    drawn: dict[tuple[str, str, int], dict[str, float]] = defaultdict(dict)
    for e in events:
        if e["ph"] == "X" and e.get("cat") == "phase":
            a = e["args"]
            drawn[(a["mode"], a["round"], a["client"])][a["phase"]] = e["dur"] / 1e6
    for mode in results.modes:
        warm = measured = 0
        for r in mode.rounds:
            warm, measured = (warm + 1, measured) if r.warmup else (warm, measured + 1)
            label = f"warm-up {warm}" if r.warmup else f"round {measured}"
            for c in r.clients:
                got = drawn.get((mode.name, label, c.client), {})
                want = sum(c.phases.values())
                total = sum(got.values())
                assert abs(total - want) <= max(0.02 * want, 1e-3), (
                    f"{mode.name} {label} client {c.client}: slices {total} s, phases {want} s")
                for phase, seconds in c.phases.items():
                    assert abs(got.get(phase, 0.0) - seconds) <= max(0.02 * seconds, 1e-3)
