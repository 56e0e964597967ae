"""The monitor's section of a results file, typed, with the one rule that says which samples
belong to which span.

The sampler writes ``Results.monitor`` as a plain JSON object: its backend and interval, the
spans the harness marked (mode, phase, round, start and end on the monitor's clock) and the
timeline (sample times, the index of the span each sample was taken in, and one list per
column and device). :meth:`Monitor.of` parses that object once, tolerating older and partial
files (a missing or malformed part is empty, never an exception), and every reader asks the
parsed :class:`Monitor` which values fell in a mode's rounds.

The rule, one for the sampler's own statistics and every reader:

- an *instant* value (memory, power, per-process memory) **belongs to the span it was taken
  in**: the span index the sampler recorded beside it (``timeline["span"]``); a file without
  those indices gets them from the spans by the same definition (the span open at the
  sample's time, the last one that started at or before it);
- a *windowed* value (:data:`WINDOWED`: host utilisation, the run's own and other programs'
  share, GPM metrics), which describes the time since the previous sample, belongs to the
  span open at the **middle of its window**, so that a short round is not given its
  neighbour's numbers.

Either way a sample at a boundary belongs to the span that starts there, and to no other.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The phases of the monitor's spans (the harness marks them; results re-exports them).
PHASE_COLD_START = "cold_start"
PHASE_WARMUP = "warmup"
PHASE_ROUND = "round"
PHASE_BETWEEN = "between"
# A measured round whose set was measured again (other programs' load disturbed it): kept in
# the monitor's spans, counted by no statistic.
PHASE_REPLACED = "replaced"
# ``--profile-ops``: a mode's extra round with torch.profiler on, after its measured ones.
PHASE_PROFILED = "profiled"

# Timeline keys that are not a column of per-device values.
_NOT_COLUMNS = ("t", "span")
# Columns whose value covers the time since the previous sample (see the module docstring).
WINDOWED = ("util", "own_util", "other_util", "sm_active", "sm_occupancy")


def span_at(starts: Sequence[float], t: float) -> int | None:
    """Position of the span running at ``t`` (spans contiguous; ``starts`` ascending)."""
    i = bisect.bisect_right(starts, t) - 1
    return i if i >= 0 else None


def midpoints(t: Sequence[float]) -> list[float]:
    """The middle of each sample's window (from the previous sample to this one)."""
    return [t[0]] + [(a + b) / 2 for a, b in zip(t, t[1:], strict=False)] if t else []


def _number(value: Any) -> float | None:
    """A finite number as written (an int stays an int), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Span:
    """One stretch of the run the harness marked: ``index`` is its place in the file's list,
    the number a sample's span index refers to."""

    index: int
    mode: str | None
    phase: str | None
    round: int | None
    start_s: float
    end_s: float

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s

    def matches(self, mode: str | None, phase: str | None, round_index: int | None) -> bool:
        """Whether this span is of ``mode``, ``phase`` and ``round_index`` (None: any)."""
        return (
            (mode is None or self.mode == mode)
            and (phase is None or self.phase == phase)
            and (round_index is None or self.round == round_index)
        )

    @classmethod
    def of(cls, index: int, raw: Any) -> Span | None:
        """The span from its JSON object; None when it has no start, or ends before it."""
        if not isinstance(raw, Mapping):
            return None
        start, end = _number(raw.get("start_s")), _number(raw.get("end_s"))
        if start is None or end is None or end < start:
            return None
        number = raw.get("round")
        return cls(
            index=index,
            mode=_text(raw.get("mode")),
            phase=_text(raw.get("phase")),
            round=number if isinstance(number, int) and not isinstance(number, bool) else None,
            start_s=float(start),
            end_s=float(end),
        )


@dataclass(frozen=True)
class Timeline:
    """The samples: their times, the span each was taken in (None: unknown), and per column
    (``util``, ``mem``, ``own_util``, ...) and device the values (None: not measured)."""

    t: tuple[float, ...] = ()
    span: tuple[int | None, ...] = ()
    columns: Mapping[str, Mapping[str, tuple[float | None, ...]]] = field(default_factory=dict)
    # The span open at the middle of each sample's window (the windowed columns' rule).
    window_span: tuple[int | None, ...] = ()

    def spans_for(self, column: str | None) -> tuple[int | None, ...]:
        """Each sample's span under the rule for ``column`` (None: the instant rule)."""
        return self.window_span if column in WINDOWED else self.span

    def series(self, column: str, device: str) -> tuple[float | None, ...]:
        """One column's values on one device, a value per sample; () when not recorded."""
        return self.columns.get(column, {}).get(device, ())

    @classmethod
    def of(cls, raw: Any, spans: Sequence[Span]) -> Timeline:
        if not isinstance(raw, Mapping):
            return cls()
        t = raw.get("t")
        if not isinstance(t, list) or any(_number(x) is None for x in t):
            return cls()
        times = tuple(float(x) for x in t)
        columns: dict[str, dict[str, tuple[float | None, ...]]] = {}
        for name, per_device in raw.items():
            if name in _NOT_COLUMNS or not isinstance(per_device, Mapping):
                continue
            parsed = {
                str(device): tuple(_number(v) for v in values)
                for device, values in per_device.items()
                if isinstance(values, list) and len(values) == len(times)
            }
            if parsed:
                columns[str(name)] = parsed
        ordered = sorted(spans, key=lambda s: (s.start_s, s.index))
        starts = [s.start_s for s in ordered]
        windows = tuple(
            None if (i := span_at(starts, m)) is None else ordered[i].index
            for m in midpoints(times)
        )
        return cls(times, _span_indices(raw.get("span"), times, spans), columns, windows)


def _span_indices(
    tags: Any, times: Sequence[float], spans: Sequence[Span]
) -> tuple[int | None, ...]:
    """The span each sample was taken in: as the sampler recorded it, else (an older file)
    the last span that started at or before the sample's time."""
    if isinstance(tags, list) and len(tags) == len(times):
        return tuple(
            s if isinstance(s, int) and not isinstance(s, bool) else None for s in tags
        )
    ordered = sorted(spans, key=lambda s: (s.start_s, s.index))
    starts = [s.start_s for s in ordered]
    return tuple(None if (i := span_at(starts, ti)) is None else ordered[i].index
                 for ti in times)


@dataclass(frozen=True)
class Monitor:
    """The monitor's section of a results file (see the module docstring for the rule)."""

    backend: str | None = None
    interval_s: float | None = None
    note: str | None = None
    devices: tuple[str, ...] = ()
    spans: tuple[Span, ...] = ()
    timeline: Timeline = field(default_factory=Timeline)

    @classmethod
    def of(cls, raw: Any) -> Monitor:
        """The section from its JSON object (None, or anything not an object: empty)."""
        if not isinstance(raw, Mapping):
            return cls()
        listed = raw.get("spans")
        spans = tuple(
            s for i, r in enumerate(listed if isinstance(listed, list) else ())
            if (s := Span.of(i, r)) is not None
        )
        devices = raw.get("devices")
        note = raw.get("note")
        return cls(
            backend=_text(raw.get("backend")),
            interval_s=_number(raw.get("interval_s")),
            note=str(note) if note else None,
            devices=tuple(d for d in devices if isinstance(d, str))
            if isinstance(devices, list) else (),
            spans=spans,
            timeline=Timeline.of(raw.get("timeline"), spans),
        )

    def span(self, index: int | None) -> Span | None:
        """The span with file index ``index`` (None: none such, or left out as malformed)."""
        for s in self.spans:
            if s.index == index:
                return s
        return None

    def spans_of(
        self, mode: str | None = None, phase: str | None = None, round_index: int | None = None
    ) -> tuple[Span, ...]:
        """The spans of ``mode``, ``phase`` and ``round_index`` (None: any), in time order."""
        found = [s for s in self.spans if s.matches(mode, phase, round_index)]
        return tuple(sorted(found, key=lambda s: (s.start_s, s.index)))

    def rounds(self, mode: str | None = None) -> tuple[Span, ...]:
        """The measured rounds (``round`` spans) of ``mode`` (None: every mode's), in time order."""
        return self.spans_of(mode, PHASE_ROUND)

    def sample_indices(
        self,
        mode: str | None = None,
        phase: str | None = None,
        round_index: int | None = None,
        *,
        span: int | None = None,
        column: str | None = None,
    ) -> list[int]:
        """The indices of the samples of ``column`` (None: an instant one) that belong to a
        span of ``mode``, ``phase`` and ``round_index`` (None: any), or to the span with
        index ``span``: the one rule (module docstring)."""
        wanted = (
            {span} if span is not None
            else {s.index for s in self.spans if s.matches(mode, phase, round_index)}
        )
        return [i for i, s in enumerate(self.timeline.spans_for(column))
                if s is not None and s in wanted]

    def timed_values(
        self, column: str, device: str, indices: Sequence[int]
    ) -> list[tuple[float, float]]:
        """(time, value) of ``column`` on ``device`` at the samples ``indices`` (from
        :meth:`sample_indices`), unmeasured values left out."""
        values = self.timeline.series(column, device)
        if not values:
            return []
        return [(self.timeline.t[i], v) for i in indices if (v := values[i]) is not None]

    def samples(
        self,
        column: str,
        device: str,
        mode: str | None = None,
        phase: str | None = None,
        round_index: int | None = None,
        *,
        span: int | None = None,
    ) -> list[float]:
        """The values of ``column`` on ``device`` sampled in the spans of ``mode``, ``phase``
        and ``round_index`` (None: any), or in the span ``span``; in time order."""
        indices = self.sample_indices(mode, phase, round_index, span=span, column=column)
        return [v for _, v in self.timed_values(column, device, indices)]

    def outside_rounds_s(self) -> float | None:
        """Seconds of the monitored run that were not a measured round (start-up, warm-up,
        gaps); None without spans."""
        if not self.spans:
            return None
        total = max(s.end_s for s in self.spans) - min(s.start_s for s in self.spans)
        return max(total - sum(s.length_s for s in self.rounds()), 0.0)
