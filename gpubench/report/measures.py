"""Numbers derived from a :class:`Results` for display: spreads, speedups, per-device memory.

Nothing here formats or draws; tables and plots share these so that both show the same values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from gpubench import stats
from gpubench.results import DeviceStats, ModeResult, Results, RoundRecord, median

# A mode is marked clearly faster than serial (✅) when the whole confidence interval of its
# speedup (``stats.compare_speed``, the gate's own statistic) lies above this; otherwise ❌.
# The report's question is the gate's expectation ``min_speedup = 1.05``: ✅ exactly when that
# check PASSes, never when it is INCONCLUSIVE or FAILs.
CLEARLY_FASTER = 1.05


def relative_spread(times: Sequence[float]) -> float | None:
    """Interquartile range over median (``stats.spread``); None with fewer than two values."""
    if len(times) < 2:
        return None
    value = stats.spread(times)
    return value if math.isfinite(value) else None


def speedup(results: Results, mode: ModeResult) -> float | None:
    """The mode's speedup vs serial (``stats.speedup``); the recorded one without round times."""
    rounds = stats.rounds_vs_serial(results, mode)
    if rounds is not None:
        return stats.speedup(rounds)
    return mode.speedup_vs_serial if mode.ok else None


def speedup_spread(results: Results, mode: ModeResult) -> float | None:
    """Relative half-width of a speedup: half the IQR/median of mode and serial, combined."""
    serial = results.mode("serial")
    if serial is None:
        return None
    a = relative_spread(mode.round_times_s)
    b = relative_spread(serial.round_times_s)
    if a is None or b is None:
        return None
    if mode.name == "serial":
        return 0.0
    return math.hypot(a / 2, b / 2)


def faster_than_serial(results: Results, mode: ModeResult) -> bool:
    """The whole interval of the mode's speedup lies above ``CLEARLY_FASTER`` (the ✅)."""
    rounds = stats.rounds_vs_serial(results, mode)
    if rounds is None or mode.name == stats.REFERENCE_MODE:
        return False
    return stats.compare_speed(rounds, at_least=CLEARLY_FASTER).holds


def clearly_faster(value: float, spread: float | None) -> bool:
    """The older spread rule, still used by the speedup plot's bar colours.

    Prefer :func:`faster_than_serial`, which decides as the gate does.
    """
    return value * (1 - (spread or 0.0)) > CLEARLY_FASTER


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
    monitor = results.monitor if isinstance(results.monitor, dict) else {}
    for d in monitor.get("devices") or ():
        if isinstance(d, str):
            found.add(d)
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


def mode_extents(monitor: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Each mode's first start and last end in the monitor's spans (run-relative seconds)."""
    extents: dict[str, tuple[float, float]] = {}
    for span in monitor.get("spans") or ():
        if not isinstance(span, dict):
            continue
        name, start, end = span.get("mode"), span.get("start_s"), span.get("end_s")
        if not isinstance(name, str) or not isinstance(start, (int, float)):
            continue
        if not isinstance(end, (int, float)):
            continue
        lo, hi = extents.get(name, (start, end))
        extents[name] = (min(lo, start), max(hi, end))
    return extents
