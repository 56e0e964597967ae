"""What several workers on one device, or one starved device, did against serial."""

from __future__ import annotations

from collections.abc import Callable

from gpubench.findings.base import (
    MULTI_DEVICE_MODES,
    NO_FASTER,
    SM_STARVED_PCT,
    STARVED_PCT,
    Facts,
    Finding,
    clearly,
    is_cpu,
    ok_mode,
    runs_threads,
    speedup,
    stats_of,
    versus_serial,
)
from gpubench.findings.drift import suspect
from gpubench.results import ModeResult, Results
from gpubench.stats import SLOWER

CODES: dict[str, tuple[str, ...]] = {
    "threads-slower": (),
    "one-device-faster": (),
    "processes-time-sliced": ("gpu", "cpu"),
    "device-starved": ("util", "sm"),
    "vectorized-faster": (),
    "vectorized-slower": ("gpu", "cpu"),
}


def _kind(device: str) -> str:
    return "cpu" if is_cpu(device) else "gpu"


def threads_slower(results: Results) -> list[Finding]:
    out = []
    serial = ok_mode(results, "serial")
    for row in results.modes:
        if not runs_threads(row) or "@" in row.name:  # a counterfactual row is not the mode
            continue
        name, mode = row.name, ok_mode(results, row.name)
        if mode is None or serial is None:
            continue
        sp = speedup(results, mode)
        if sp is None or not clearly(results, mode, at_most=SLOWER):
            continue
        out.append(Finding("warning", "threads-slower", {
            "mode": name, "workers": mode.workers,
            "device": mode.devices[0] if mode.devices else None,
            "versus": versus_serial(serial, mode, sp),
        }))
    return out


def one_device_faster(results: Results) -> list[Finding]:
    """Threads or processes on one device that beat serial: serial left the device idle."""
    serial = ok_mode(results, "serial")
    if serial is None or not serial.devices:
        return []
    device = serial.devices[0]
    stats = stats_of(serial, device)
    util = stats.util_mean_pct if stats is not None else None
    modes = []
    for mode in results.modes:
        if mode.name == "serial" or not mode.ok or len(mode.devices) != 1 or mode.workers < 2:
            continue
        sp = speedup(results, mode)
        if sp is not None and clearly(results, mode, at_least=NO_FASTER) and not suspect(
            results, mode
        ):  # a ratio serial's idle share cannot give is drift's (findings.drift), not idle gaps
            modes.append({"mode": mode.name, "workers": mode.workers, "speedup": sp})
    if not modes:
        return []
    return [Finding("info", "one-device-faster", {
        "modes": modes,
        "serial_busy": {"device": device, "util_pct": util} if util is not None else None,
    })]


def _process_memory(results: Results, mode: ModeResult, device: str) -> Facts | None:
    """What each process on ``device`` costs in memory, from the best source recorded."""
    stats = stats_of(mode, device)
    per_pid = list(stats.process_mem_peak_bytes.values()) if stats else []
    if per_pid:
        each = sum(per_pid) / len(per_pid)
        reserved = [w.max_reserved_bytes for w in mode.worker_memory
                    if w.device == device and w.max_reserved_bytes is not None]
        context = None
        if reserved and len(reserved) == len(per_pid):
            outside = each - sum(reserved) / len(reserved)
            context = {"bytes": outside} if outside > 0 else None
        return {"variant": "per-process", "processes": len(per_pid), "each_bytes": each,
                "context": context}
    serial = ok_mode(results, "serial")
    serial_stats = stats_of(serial, device) if serial is not None else None
    if (stats is not None and serial_stats is not None and stats.mem_peak_bytes is not None
            and serial_stats.mem_peak_bytes is not None and mode.workers > 1
            and stats.mem_peak_bytes > serial_stats.mem_peak_bytes):
        extra = (stats.mem_peak_bytes - serial_stats.mem_peak_bytes) / (mode.workers - 1)
        return {"variant": "extra", "extra_bytes": extra, "peak_bytes": stats.mem_peak_bytes,
                "serial_peak_bytes": serial_stats.mem_peak_bytes}
    rss = [w.rss_bytes for w in mode.worker_memory if w.device == device and w.rss_bytes]
    if rss:
        return {"variant": "resident", "each_bytes": sum(rss) / len(rss)}
    return None


def processes_time_sliced(results: Results) -> list[Finding]:
    out = []
    serial = ok_mode(results, "serial")
    for mode in results.modes:
        one_device_pool = mode.name in MULTI_DEVICE_MODES and len(mode.devices) == 1
        if mode.name != "multiprocess" and not one_device_pool:
            continue
        if (serial is None or not mode.ok or mode.workers < 2 or len(mode.devices) != 1
                or mode.median_round_s is None):
            continue
        sp = speedup(results, mode)
        # "No faster than serial" only when the interval says so: a ratio whose interval
        # straddles the limit (1.91x [0.98, 3.46] from 5 rounds) is not called time-sliced.
        if sp is None or not clearly(results, mode, at_most=NO_FASTER):
            continue
        device = mode.devices[0]
        out.append(Finding("warning", "processes-time-sliced", {
            "variant": _kind(device), "mode": mode.name, "workers": mode.workers,
            "device": device, "versus": versus_serial(serial, mode, sp),
            "memory": _process_memory(results, mode, device),
        }))
    return out


def device_starved(results: Results) -> list[Finding]:
    serial = ok_mode(results, "serial")
    if serial is None or not serial.devices:
        return []
    device = serial.devices[0]
    stats = stats_of(serial, device)
    if stats is None:
        return []
    batch = results.config.batch_size
    bigger: Facts = {"variant": "unknown"}
    if isinstance(batch, int) and not isinstance(batch, bool):
        bigger = {"variant": "known", "batch": batch * 4}
    facts: Facts = {
        "device": device, "util_pct": stats.util_mean_pct, "sm_pct": stats.sm_active_mean_pct,
        "samples": stats.samples, "batch": batch, "bigger": bigger,
    }
    util, sm = stats.util_mean_pct, stats.sm_active_mean_pct
    if util is not None and util < STARVED_PCT:
        return [Finding("warning", "device-starved", {"variant": "util", **facts})]
    if sm is not None and sm < SM_STARVED_PCT:
        return [Finding("warning", "device-starved", {"variant": "sm", **facts})]
    return []


def vectorized(results: Results) -> list[Finding]:
    """What batching the clients into one computation did, against serial."""
    serial, mode = ok_mode(results, "serial"), ok_mode(results, "vectorized")
    if serial is None or mode is None:
        return []
    sp = speedup(results, mode)
    faster = clearly(results, mode, at_least=NO_FASTER)
    if sp is None or not (faster or clearly(results, mode, at_most=SLOWER)):
        return []
    facts: Facts = {"mode": mode.name, "versus": versus_serial(serial, mode, sp)}
    if faster:
        clients = results.config.clients
        facts["clients"] = ({"variant": "count", "clients": clients} if clients
                            else {"variant": "all"})
        return [Finding("info", "vectorized-faster", facts)]
    cpu = all(is_cpu(d) for d in mode.devices)
    return [Finding("warning", "vectorized-slower", {"variant": "cpu" if cpu else "gpu", **facts})]


RULES: tuple[Callable[[Results], list[Finding]], ...] = (
    threads_slower,
    processes_time_sliced,
    one_device_faster,
    device_starved,
    vectorized,
)
