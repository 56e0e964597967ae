"""``gpubench gate --history STORE``: a run judged against the current level of its series.

Against one stored run, a gate compares two noisy speedups; against a history it compares
one with the level of the latest segment of the series (same testbed, work and mode; after
its last change point), whose mean and spread many runs have pinned down. The interval of
``current / level`` is a Student t prediction interval on the logs,
``(x - m) ± t(level, n - 1) · s · sqrt(1 + 1/n)``, with ``m`` and ``s`` the segment's mean
and standard deviation over its ``n`` runs: the spread between runs already holds one run's
own noise. The verdict reads it as the gate reads any interval
(:func:`gpubench.gate.checks.verdict_of`): FAIL when it lies wholly below ``1 - max_drop``.
A segment of fewer than ``MIN_SEGMENT`` runs gives SKIP; the run itself (already added) is
left out of its segment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gpubench import stats
from gpubench.gate.checks import before_speed, result_of, unless_disturbed, verdict_of
from gpubench.gate.verdicts import FAIL, INCONCLUSIVE, SKIP, GateReport, Verdict
from gpubench.history.check import Segment, series_of
from gpubench.history.entries import Entry, entries_of, run_id
from gpubench.results import Results
from gpubench.stats import DEFAULT_LEVEL, Interval

MIN_SEGMENT = 3


def _segment(entries: Sequence[Entry], key: tuple[object, ...]) -> Segment | None:
    for series in series_of([e for e in entries if e.series == key]):
        return series.segments[-1] if series.segments else None
    return None


def _prediction(x: float, segment: Segment, level: float) -> Interval:
    n = len(segment.entries)
    half = stats.t_quantile((1 + level) / 2, n - 1) * segment.sd_log * math.sqrt(1 + 1 / n)
    centre = x - segment.mean_log
    return Interval(math.exp(centre), math.exp(centre - half), math.exp(centre + half), level)


@dataclass(frozen=True)
class HistoryDropCheck:
    """The speedup may not fall by more than ``max_drop`` below its series' current level."""

    case: str
    mode: str
    segment: Segment | None
    max_drop: float
    level: float = DEFAULT_LEVEL

    def evaluate(self, run: Results) -> Verdict:
        name, case = self.mode, self.case
        problem = before_speed(case, run, name)
        if problem is not None:
            return problem
        current = run.mode(name)
        speed = run.speed(name)
        if current is None or speed is None:  # before_speed has ruled this out
            raise LookupError(name)
        cur = speed.at(self.level)
        limit = 1 - self.max_drop
        limit_text = f">= {limit:.2f}x of the level"
        n = len(self.segment.entries) if self.segment else 0
        if self.segment is None or n < MIN_SEGMENT:
            return Verdict(case, name, SKIP, cur, "-", None, limit_text,
                           f"{name}: {n} run(s) at the current level of its series in the "
                           f"history (needs {MIN_SEGMENT}); nothing to compare",
                           result=result_of(current))  # fmt: skip
        change = _prediction(math.log(cur.estimate), self.segment, self.level)
        verdict = verdict_of(change, limit, None)
        first = self.segment.entries[0].commit or "?"
        summary = (f"{name}: speedup {cur.estimate:.2f}x, {change.estimate:.2f}x of the level "
                   f"{self.segment.level:.2f}x ({n} runs since commit {first}), "
                   f"{stats.DEFAULT_LEVEL * 100:g}% prediction interval "
                   f"[{change.low:.2f}, {change.high:.2f}]")  # fmt: skip
        message = None
        if verdict == FAIL:
            message = f"{summary}, below the allowed {limit:.2f}x (--max-drop {self.max_drop:.0%})"
        elif verdict == INCONCLUSIVE:
            message = f"{summary} straddles the allowed {limit:.2f}x: more runs in the history"
        return unless_disturbed(
            Verdict(case, name, verdict, cur, f"{self.segment.level:.2f}x", change, limit_text,
                    message, (), result_of(current), speed.paired),
            ("", run),
        )  # fmt: skip


def gate_against_history(
    runs: Sequence[Results],
    entries: Sequence[Entry],
    source: str,
    *,
    max_drop: float,
    inconclusive: str,
    level: float = DEFAULT_LEVEL,
    notes: Sequence[str] = (),
) -> GateReport:
    """The gate's report for ``runs`` against the series of a history store's ``entries``."""
    verdicts = []
    for run in runs:
        own = run_id(run)
        history = [e for e in entries if e.run != own]
        for entry in entries_of(run):
            check = HistoryDropCheck(str(entry.work.case), entry.mode,
                                     _segment(history, entry.series), max_drop, level)
            verdicts.append(check.evaluate(run))
    return GateReport(source, "history", tuple(verdicts), max_drop, inconclusive, level,
                      tuple(notes))
