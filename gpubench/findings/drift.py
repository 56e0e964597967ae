"""Whether the machine kept its speed during the run, and ratios one device cannot give.

Serial runs beside every other mode (interleaved) or first and again at the end (sequential),
so its rounds, in the order they ran, show a machine that got faster or slower while the run
went on: another program on the same cores, a GPU's clocks, a VM's neighbours. A ratio
measured across such a change compares two machines.

On one CPU slot, threads or processes share the same cores as serial's one client: they can
beat serial only by filling cores that serial left idle (its measured utilisation of the
slot), never beyond. A larger ratio there is drift, or not a measurement to trust.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from gpubench import stats
from gpubench.findings.base import Facts, Finding, is_cpu, ok_mode, speedup, stats_of
from gpubench.results import ModeResult, Results

CODES: dict[str, tuple[str, ...]] = {
    "machine-drift": ("slower", "faster"),
    "one-device-beyond": (),
    "schedule-sequential": (),
}

# A change of serial's round time between the run's first and last half counts as drift when
# it is larger than the rounds' own spread in either half and at least this (a round-to-round
# change that a quiet machine stays within: stats.NOISY_SPREAD).
MIN_DRIFT = stats.NOISY_SPREAD
# A one-device ratio above this needs a reason (findings.base.NO_FASTER, the same limit).
ONE_DEVICE_LIMIT = 1.10
# Slack on what serial's idle share allows (utilisation is sampled, rounds are noisy).
HEADROOM_SLACK = 1.10
# Modes that may beat serial on one device by doing other work per step (batched clients).
BATCHING_MODES = ("vectorized",)


def _base(name: str) -> str:
    return name.split("@", 1)[0].split("+", 1)[0]


def serial_drift(results: Results) -> Facts | None:
    """Serial's rounds in the order they ran: the first half's median round against the last
    half's, with the halves' own spread; None with fewer than two measured rounds."""
    serial = ok_mode(results, "serial")
    if serial is None:
        return None
    rounds = sorted((r for r in serial.rounds if not r.warmup), key=lambda r: r.index)
    times = [r.time_s for r in rounds] or list(serial.round_times_s)
    half = len(times) // 2
    if half < 1:
        return None
    early, late = times[:half], times[-half:]
    early_s, late_s = stats.median(early), stats.median(late)
    if early_s <= 0 or late_s <= 0:
        return None
    noise = max(stats.spread(early), stats.spread(late))
    change = late_s / early_s - 1
    return {"early_s": early_s, "late_s": late_s, "change_pct": abs(change) * 100,
            "spread": {"spread_pct": noise * 100} if half > 1 else None, "rounds": len(times),
            "drifted": abs(math.log(late_s / early_s)) > max(noise, MIN_DRIFT),
            "variant": "slower" if change > 0 else "faster"}


def _one_device_cpu(results: Results, mode: ModeResult) -> bool:
    """The mode ran on serial's one CPU slot (threads, processes, a one-device pool)."""
    serial = ok_mode(results, "serial")
    if serial is None or not serial.devices or mode.name == "serial":
        return False
    if _base(mode.name) in BATCHING_MODES or not mode.ok:
        return False
    return tuple(mode.devices) == (serial.devices[0],) and is_cpu(serial.devices[0])


def _headroom(results: Results, device: str) -> float | None:
    """How many times faster the slot could run than serial ran it: 100 / its utilisation."""
    serial = ok_mode(results, "serial")
    s = stats_of(serial, device) if serial is not None else None
    if s is None or not s.util_mean_pct:
        return None
    return 100.0 / s.util_mean_pct


def suspect(results: Results, mode: ModeResult) -> bool:
    """A one-CPU-slot ratio above the limit that serial's measured idle share does not allow."""
    if not _one_device_cpu(results, mode):
        return False
    sp = speedup(results, mode)
    if sp is None or sp <= ONE_DEVICE_LIMIT:
        return False
    room = _headroom(results, mode.devices[0])
    return room is None or sp > room * HEADROOM_SLACK


def _suspects(results: Results) -> list[Facts]:
    out = []
    for mode in results.modes:
        if suspect(results, mode):
            room = _headroom(results, mode.devices[0])
            out.append({"mode": mode.name, "speedup": speedup(results, mode),
                        "device": mode.devices[0],
                        "serial_util": None if room is None else {"util_pct": 100.0 / room}})
    return out


def machine_drift(results: Results) -> list[Finding]:
    """Serial's round time changed across the run by more than its rounds' spread."""
    drift = serial_drift(results)
    if drift is None or not drift.pop("drifted"):
        return []
    suspects = _suspects(results)
    drift["suspects"] = ({"modes": [{"mode": s["mode"], "speedup": s["speedup"]}
                                    for s in suspects]} if suspects else None)
    drift["sequential"] = {} if results.config.interleave is False else None
    return [Finding("warning", "machine-drift", drift)]


def one_device_beyond(results: Results) -> list[Finding]:
    """A one-slot ratio beyond serial's idle share, with no drift measured to blame it on."""
    drift = serial_drift(results)
    if drift is not None and drift["drifted"]:
        return []  # machine-drift names these modes
    return [Finding("warning", "one-device-beyond", facts) for facts in _suspects(results)]


def schedule_sequential(results: Results) -> list[Finding]:
    """Interleaving was dropped because the modes' workers do not fit in memory at once."""
    reason = results.config.schedule_reason
    if results.config.schedule != "sequential" or not reason:
        return []
    return [Finding("info", "schedule-sequential", {"reason": reason})]


RULES: tuple[Callable[[Results], list[Finding]], ...] = (
    machine_drift,
    one_device_beyond,
    schedule_sequential,
)
