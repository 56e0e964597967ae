"""The monitor's samples that fell inside measured rounds, per mode and round.

The sampler tags every sample with the span (mode, phase, round) that was open when it was
taken (``timeline["span"]``); start-up, warm-up and the gaps between rounds are spans of
their own. These helpers keep only the samples of ``round`` spans, so a statistic or a plot
of "what the device did while the mode trained" is not diluted by 40 s of worker start-up.
Pure functions over the results file's ``monitor`` object: no torch, no matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpubench.results import PHASE_ROUND


@dataclass(frozen=True)
class RoundWindow:
    """One measured round of one mode, in seconds since the monitor started."""

    mode: str
    round: int
    start_s: float
    end_s: float
    span: int  # index into monitor["spans"]

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def round_windows(monitor: Any) -> list[RoundWindow]:
    """Every measured round span, in time order; malformed spans are left out."""
    if not isinstance(monitor, Mapping):
        return []
    out = []
    for i, span in enumerate(monitor.get("spans") or ()):
        if not isinstance(span, Mapping) or span.get("phase") != PHASE_ROUND:
            continue
        mode, start, end = span.get("mode"), _number(span.get("start_s")), _number(span.get("end_s"))
        index = span.get("round")
        if not isinstance(mode, str) or start is None or end is None or end <= start:
            continue
        out.append(RoundWindow(mode, int(index) if isinstance(index, int) else -1, start, end, i))
    return sorted(out, key=lambda w: (w.start_s, w.span))


def _column(monitor: Mapping[str, Any], column: str, device: str) -> list[Any] | None:
    timeline = monitor.get("timeline")
    if not isinstance(timeline, Mapping):
        return None
    values = timeline.get(column)
    if not isinstance(values, Mapping):
        return None
    series = values.get(device)
    t = timeline.get("t")
    if not isinstance(series, list) or not isinstance(t, list) or len(series) != len(t):
        return None
    return series


def window_samples(
    monitor: Any, column: str, device: str, window: RoundWindow
) -> list[tuple[float, float]]:
    """(time, value) of the samples taken during ``window`` (nulls left out).

    A sample belongs to the span the sampler tagged it with; files without tags fall back to
    the sample's time lying inside the window.
    """
    if not isinstance(monitor, Mapping):
        return []
    series = _column(monitor, column, device)
    if series is None:
        return []
    timeline = monitor["timeline"]
    t = timeline["t"]
    tags = timeline.get("span")
    tagged = isinstance(tags, list) and len(tags) == len(t)
    out = []
    for i, (ti, v) in enumerate(zip(t, series, strict=True)):
        ti_n, v_n = _number(ti), _number(v)
        if ti_n is None or v_n is None:
            continue
        inside = tags[i] == window.span if tagged else window.start_s <= ti_n <= window.end_s
        if inside:
            out.append((ti_n, v_n))
    return out


def mode_round_values(monitor: Any, column: str, device: str, mode: str) -> list[float]:
    """Every value of ``column`` on ``device`` sampled during ``mode``'s measured rounds."""
    return [
        v
        for w in round_windows(monitor)
        if w.mode == mode
        for _, v in window_samples(monitor, column, device, w)
    ]


def outside_rounds_s(monitor: Any) -> float | None:
    """Seconds of the monitored run that were not a measured round (start-up, warm-up, gaps)."""
    if not isinstance(monitor, Mapping):
        return None
    spans = [s for s in monitor.get("spans") or () if isinstance(s, Mapping)]
    ends = [e for s in spans if (e := _number(s.get("end_s"))) is not None]
    starts = [b for s in spans if (b := _number(s.get("start_s"))) is not None]
    if not ends or not starts:
        return None
    total = max(ends) - min(starts)
    return max(total - sum(w.length_s for w in round_windows(monitor)), 0.0)
