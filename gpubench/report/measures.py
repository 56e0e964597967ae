"""Numbers derived from a :class:`Results` for display: spreads, speedups, per-device memory.

Nothing here formats or draws; tables and plots share these so that both show the same values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpubench import stats
from gpubench.results import (
    STATUS_FAILED,
    DeviceStats,
    ModeResult,
    Results,
    RoundRecord,
    median,
)

# The speed verdict of a mode against serial is ``Results.speed``'s (``stats.Speed.faster`` /
# ``slower``, with the one pair of limits ``stats.FASTER`` and ``stats.SLOWER``: the gate's
# ``min_speedup = 1.05`` PASSes exactly when a mode is faster). A mode whose result check
# failed gets no verdict: it did other work, so its ratio is not a speedup.

# Verdicts (catalogue keys ``verdict.speed.<v>``) and result checks (``check.<c>``).
FASTER, SLOWER_V, NO_DIFFERENCE, BASELINE, NOT_COMPARABLE, NO_VERDICT = (
    "faster", "slower", "no-difference", "baseline", "not-comparable", "none")
# Measured beside other programs' load (``Results.disturbance``): no speed verdict.
BUSY = "busy-machine"
CHECK_SAME, CHECK_DIFFERS, CHECK_BASELINE, CHECK_UNKNOWN, CHECK_NOT_REPRODUCIBLE = (
    "same", "differs", "baseline", "unknown", "not-reproducible")


@dataclass(frozen=True)
class SpeedView:
    """A mode's speed against serial, as every table, plot and page shows it.

    ``estimate`` and ``interval`` are ``Results.speed``'s (:class:`gpubench.stats.Speed`,
    paired rounds in an interleaved run), the verdict its judgement unless the result check
    or other programs' load rule one out; ``check`` is the result check, a separate column.
    ``drawable`` is False where a plot must not show a speedup: the mode computed something
    other than serial's result.
    """

    mode: str
    estimate: float | None
    interval: stats.Interval | None
    verdict: str
    check: str
    paired: bool = False

    @property
    def drawable(self) -> bool:
        return self.estimate is not None and self.check != CHECK_DIFFERS


# The marks a mode can carry (catalogue ``mark.<m>``: a symbol, ``mark.<m>.legend`` its
# meaning). Each is drawn and written its own way, never one for another: a mode that failed
# has no value at all, one that computed something else has a ratio that is not a speedup, one
# whose work is not reproducible was not checked against serial, and an unsampled one ran
# rounds the monitor took no sample in (its device figures are unknown, not 0%).
MARK_FAILED, MARK_DIFFERS, MARK_NOT_REPRODUCIBLE, MARK_UNSAMPLED = (
    "failed", "differs", "not-reproducible", "unsampled")
MARKS = (MARK_FAILED, MARK_DIFFERS, MARK_NOT_REPRODUCIBLE, MARK_UNSAMPLED)


def util_pct(mode: ModeResult, device: str) -> float | None:
    """A device's utilisation during the mode's measured rounds: the mean the monitor recorded
    (``DeviceStats.util_mean_pct``). The tables' device cells and the utilisation plot's
    labels both show this one figure."""
    stat = device_stat(mode, device)
    return None if stat is None else stat.util_mean_pct


def monitored(results: Results) -> bool:
    """Whether the monitor recorded device statistics for any mode of the run."""
    return any(m.device_stats for m in results.modes)


def unsampled(results: Results, mode: ModeResult, device: str) -> bool:
    """The monitor ran, the mode used ``device``, and no sample fell in its measured rounds."""
    return (mode.ok and device in mode.devices and monitored(results)
            and no_sample(mode, device))


def no_sample(mode: ModeResult, device: str) -> bool:
    """The monitor's statistics hold no utilisation of ``device`` for the mode's rounds."""
    stat = device_stat(mode, device)
    return stat is None or (stat.util_mean_pct is None and stat.busy is None)


def mode_marks(results: Results, mode: ModeResult) -> tuple[str, ...]:
    """The marks of ``mode`` (see :data:`MARKS`), in that order; empty for an ordinary mode."""
    if mode.status == STATUS_FAILED:
        return (MARK_FAILED,)
    if not mode.ok:
        return ()
    marks = []
    check = result_check(results, mode)
    if check == CHECK_DIFFERS:
        marks.append(MARK_DIFFERS)
    elif check == CHECK_NOT_REPRODUCIBLE:
        marks.append(MARK_NOT_REPRODUCIBLE)
    if any(unsampled(results, mode, d) for d in mode.devices):
        marks.append(MARK_UNSAMPLED)
    return tuple(marks)


def result_check(results: Results, mode: ModeResult) -> str:
    if mode.name == stats.REFERENCE_MODE:
        return CHECK_BASELINE
    if not mode.reproducible:
        return CHECK_NOT_REPRODUCIBLE
    if mode.same_result is True:
        return CHECK_SAME
    if mode.same_result is False:
        return CHECK_DIFFERS
    return CHECK_UNKNOWN


def speed_of(results: Results, mode: ModeResult) -> SpeedView:
    """The one speed view of ``mode`` (see :class:`SpeedView`)."""
    check = result_check(results, mode)
    if not mode.ok:
        return SpeedView(mode.name, None, None, NO_VERDICT, check)
    if mode.name == stats.REFERENCE_MODE:
        return SpeedView(mode.name, 1.0, None, BASELINE, check)
    speed = results.speed(mode.name)
    if speed is None:
        value = mode.speedup_vs_serial
        verdict = NOT_COMPARABLE if check == CHECK_DIFFERS else NO_VERDICT
        return SpeedView(mode.name, value, None, verdict, check)
    if check == CHECK_DIFFERS:
        verdict = NOT_COMPARABLE
    elif results.disturbance(mode.name) is not None:
        verdict = BUSY
    elif speed.faster:
        verdict = FASTER
    elif speed.slower:
        verdict = SLOWER_V
    else:
        verdict = NO_DIFFERENCE
    return SpeedView(mode.name, speed.ratio, speed.interval, verdict, check, speed.paired)


def format_ratio(estimate: float | None, interval: stats.Interval | None) -> str:
    """``1.91x [1.00, 3.35]``: a ratio and its interval; ``[a–b]`` when the interval is the
    bootstrap's whole range (fewer than ``stats.MIN_ROUNDS`` rounds), the ratio alone when
    there is none."""
    if estimate is None:
        return "—"
    value = f"{estimate:.2f}x"
    i = interval
    if i is None or i.low == i.high:
        return value
    sep = ", " if i.estimated else "–"
    return f"{value} [{i.low:.2f}{sep}{i.high:.2f}]"


def format_speedup(speed: SpeedView) -> str:
    """The speed cell of every table: :func:`format_ratio` of the mode's speedup."""
    return format_ratio(speed.estimate, speed.interval)


def relative_spread(times: Sequence[float]) -> float | None:
    """Interquartile range over median (``stats.spread``); None with fewer than two values."""
    if len(times) < 2:
        return None
    value = stats.spread(times)
    return value if math.isfinite(value) else None


def speedup(results: Results, mode: ModeResult) -> float | None:
    """The mode's speedup vs serial (``Results.speed``); the recorded one without round times."""
    return speed_of(results, mode).estimate


def faster_than_serial(results: Results, mode: ModeResult) -> bool:
    """The whole interval of the mode's speedup lies above ``stats.FASTER``."""
    return speed_of(results, mode).verdict == FASTER


_DEVICE_KEY = re.compile(r"([a-z]+):(\d+)")


def device_sort_key(device: str) -> tuple[int, str, int]:
    m = _DEVICE_KEY.fullmatch(device)
    if not m:
        return (2, device, 0)
    return (0 if m.group(1) == "cuda" else 1, m.group(1), int(m.group(2)))


def device_entry_id(entry: dict[str, Any]) -> str | None:
    for key in ("id", "device", "name"):
        value = entry.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def device_ids(results: Results) -> list[str]:
    """Every device of the run, GPUs first, in index order.

    Taken from ``results.devices``, the monitor, the device statistics and the modes' own
    device lists, whichever name them: an idle device is still a column.
    """
    found: set[str] = set()
    for entry in results.devices:
        if isinstance(entry, dict):
            ident = device_entry_id(entry)
            if ident:
                found.add(ident)
    found.update(results.monitor_record.devices)
    for mode in results.modes:
        found.update(mode.devices)
        found.update(s.device for s in mode.device_stats)
    return sorted(found, key=device_sort_key)


def cpu_slots_only(devices: Sequence[str]) -> bool:
    return bool(devices) and all(d.startswith("cpu:") for d in devices)


def device_stat(mode: ModeResult, device: str) -> DeviceStats | None:
    for s in mode.device_stats:
        if s.device == device:
            return s
    return None


def _worker_sum(mode: ModeResult, device: str, attr: str) -> int | None:
    values = [getattr(w, attr) for w in mode.worker_memory if w.device == device]
    if not values or any(v is None for v in values):
        return None
    return sum(values)


def device_memory(mode: ModeResult, device: str) -> int | None:
    """Peak memory on one device while the mode ran: the monitor's, else the workers' own."""
    stat = device_stat(mode, device)
    if stat is not None and stat.mem_peak_bytes is not None:
        return stat.mem_peak_bytes
    for attr in ("max_reserved_bytes", "rss_bytes"):
        value = _worker_sum(mode, device, attr)
        if value is not None:
            return value
    return None


def memory_split(mode: ModeResult, device: str) -> dict[str, int] | None:
    """Split a device's peak into tensors / allocator cache / context+other, when known.

    Needs torch's allocator statistics from every worker on the device (CUDA runs);
    otherwise None and the plot shows the peak alone.
    """
    total = device_memory(mode, device)
    allocated = _worker_sum(mode, device, "max_allocated_bytes")
    reserved = _worker_sum(mode, device, "max_reserved_bytes")
    if total is None or allocated is None or reserved is None:
        return None
    return {
        "tensors": allocated,
        "cache": max(reserved - allocated, 0),
        "context": max(total - reserved, 0),
    }


def format_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.0f} MiB"
    if n >= 2**10:
        return f"{n / 2**10:.0f} KiB"
    return f"{n} B"


def representative_round(mode: ModeResult) -> RoundRecord | None:
    """The measured round (with client timings) whose time is nearest the median."""
    rounds = [r for r in mode.rounds if not r.warmup and r.clients]
    if not rounds:
        rounds = [r for r in mode.rounds if r.clients]
    if not rounds:
        return None
    mid = median([r.time_s for r in rounds])
    return min(rounds, key=lambda r: (abs(r.time_s - mid), r.index))


def case_title(results: Results) -> str:
    """The case as a plot title shows it: a Flower app's path and options shortened to the
    app's file and object (``app.py:app``), never a clipped run-config string."""
    case = str(results.config.case or "")
    head = case.split(";", 1)[0]
    if head.startswith("flower:"):
        head = head[len("flower:"):]
    if "/" in head:
        head = head.rsplit("/", 1)[1]
    return head if len(head) <= 40 else head[:39] + "…"
