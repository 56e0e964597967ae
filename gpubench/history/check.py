"""``history check``: the change points of every series of a store, and the verdict on the
latest one (pure: no I/O).

A series is the entries of one testbed, work and mode, in time order (the results files'
``created_utc``; store order among equal times). Detection reads the log speedups of the
usable entries only (:attr:`~.entries.Entry.usable`): a run beside other programs' load, a
mode whose result differs from serial's, or one without a speedup stays in the store and on
the plot, marked, but is no evidence of a level. The check fails (exit 1) when the latest
segment of a series is a drop of more than ``max_drop`` from the segment before it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gpubench.gate.verdicts import DEFAULT_MAX_DROP
from gpubench.history.changes import MAX_P, MIN_MAGNITUDE, Split, change_points, levels
from gpubench.history.entries import Entry, Testbed, Work


@dataclass(frozen=True)
class Change:
    """A change point of a series: where the new level starts, the levels, the p-value."""

    commit: str | None
    time: str
    index: int  # position in the series' usable entries
    before: float
    after: float
    p_value: float

    @property
    def ratio(self) -> float:
        return self.after / self.before

    @property
    def drop(self) -> bool:
        return self.after < self.before


@dataclass(frozen=True)
class Segment:
    """A stretch of a series between change points: its usable entries, level and spread."""

    entries: tuple[Entry, ...]
    mean_log: float
    sd_log: float

    @property
    def level(self) -> float:
        return math.exp(self.mean_log)


@dataclass(frozen=True)
class Series:
    testbed: Testbed
    work: Work
    mode: str
    entries: tuple[Entry, ...]  # every entry, in time order
    segments: tuple[Segment, ...]  # of the usable entries
    changes: tuple[Change, ...]

    @property
    def usable(self) -> tuple[Entry, ...]:
        return tuple(e for e in self.entries if e.usable)

    @property
    def latest_change(self) -> Change | None:
        return self.changes[-1] if self.changes else None

    def regressed(self, max_drop: float) -> bool:
        """The latest segment is a drop of more than ``max_drop`` from the one before."""
        last = self.latest_change
        return last is not None and last.ratio < 1 - max_drop


def series_of(
    entries: Sequence[Entry], *, max_p: float = MAX_P, min_magnitude: float = MIN_MAGNITUDE
) -> list[Series]:
    """Every series in ``entries`` with its change points, in the order they first appear."""
    groups: dict[tuple[Testbed, Work, str], list[tuple[int, Entry]]] = {}
    for order, entry in enumerate(entries):
        groups.setdefault(entry.series, []).append((order, entry))
    out = []
    for (testbed, work, mode), members in groups.items():
        ordered = tuple(e for _, e in sorted(members, key=lambda m: (m[1].time, m[0])))
        usable = [e for e in ordered if e.usable]
        logs = [e.log_speedup for e in usable]
        splits = change_points(logs, max_p=max_p, min_magnitude=min_magnitude)
        segments = tuple(
            Segment(tuple(usable[lo:hi]), mean, sd) for lo, hi, mean, sd in levels(logs, splits)
        ) if usable else ()
        changes = tuple(_change(usable, s) for s in splits)
        out.append(Series(testbed, work, mode, ordered, segments, changes))
    return out


def _change(usable: Sequence[Entry], split: Split) -> Change:
    first = usable[split.index]
    return Change(first.commit, first.time, split.index, split.before, split.after, split.p_value)


@dataclass(frozen=True)
class HistoryCheck:
    """The answer of ``history check``: every series, and which of them regressed."""

    series: tuple[Series, ...]
    max_drop: float
    notes: tuple[str, ...] = ()

    @property
    def regressions(self) -> tuple[Series, ...]:
        return tuple(s for s in self.series if s.regressed(self.max_drop))

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0


def check_history(
    entries: Sequence[Entry], *, max_drop: float = DEFAULT_MAX_DROP, notes: Sequence[str] = ()
) -> HistoryCheck:
    return HistoryCheck(tuple(series_of(entries)), max_drop, tuple(notes))
