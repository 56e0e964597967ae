"""The finding type, the thresholds every rule shares, and helpers over the data model.

A rule reads a :class:`Results` (or the doctor's machine dict) and returns
:class:`Finding` objects: a level, a stable code and the facts behind it (numbers, mode
names, device ids: plain values that JSON can hold). Rules say nothing in words; every
phrase, English and Chinese, is in ``gpubench/report/catalogue.toml``, keyed by code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpubench.results import KIND_THREAD, DeviceStats, ModeResult, Results, facts_of

LEVELS = ("error", "warning", "info")

# Thresholds, each with the reason for its value. Slower / faster than serial is the one
# judgement of ``Results.speed`` (``gpubench.stats.SLOWER``, ``gpubench.stats.FASTER``).
NO_FASTER = 1.10  # several processes on one device must beat this to count as parallel
STARVED_PCT = 50.0  # a device busy less than half the time in serial is waiting on the host
SM_STARVED_PCT = 30.0  # kernels that keep under 30% of the SMs busy are too small
UNBALANCED = 1.15  # busiest device's training time over the mean: 15% idle waiting on it
POOR_SCALING = 0.70  # multi-device speedup below 70% of the number of devices
GOOD_SCALING = 0.85  # and at or above 85% of it: the claim "k devices, ~k-fold" holds
MIN_COLD_START_S = 0.5  # shorter start-ups do not matter, whatever the run length

MULTI_DEVICE_MODES = ("multi-gpu",)

Facts = dict[str, Any]


@dataclass(frozen=True)
class Finding:
    """One diagnostic statement: ``level`` (error, warning, info), ``code`` and its facts.

    ``facts`` holds plain values. A nested dict is an optional clause (``None`` when absent)
    and may name a ``variant``; a list of dicts is a clause repeated per item; a top-level
    ``variant`` selects the wording of the message and hint.
    """

    level: str
    code: str
    facts: Facts = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "code": self.code, "facts": self.facts}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(str(data["level"]), str(data["code"]), dict(data.get("facts") or {}))


def by_level(found: list[Finding]) -> list[Finding]:
    """Errors first, then warnings, then infos; the rules' own order within a level."""
    return sorted(found, key=lambda f: LEVELS.index(f.level) if f.level in LEVELS else len(LEVELS))


# --- helpers over the data model --------------------------------------------------------------


def ok_mode(results: Results, name: str) -> ModeResult | None:
    """The named mode when it ran and has measured rounds."""
    mode = results.mode(name)
    return mode if mode is not None and mode.ok and mode.round_times_s else None


def speedup(results: Results, mode: ModeResult) -> float | None:
    """The mode's speedup over serial, ``Results.speed`` (paired rounds in an interleaved
    run): the figure the report's table and the gate show; the recorded one without rounds."""
    speed = results.speed(mode.name)
    return speed.ratio if speed is not None else mode.speedup_vs_serial


def clearly(
    results: Results, mode: ModeResult, *, at_least: float | None = None,
    at_most: float | None = None,
) -> bool:
    """Whether the mode is at least / at most that fast against serial, by the one decision
    (``Results.speed``'s interval, :func:`gpubench.stats.decide`) the report and the gate use."""
    speed = results.speed(mode.name)
    return speed is not None and speed.check(at_least=at_least, at_most=at_most).holds


def stats_of(mode: ModeResult, device: str) -> DeviceStats | None:
    return next((s for s in mode.device_stats if s.device == device), None)


def is_cpu(device: str) -> bool:
    return device.startswith("cpu")


def versus_serial(serial: ModeResult, mode: ModeResult, ratio: float) -> Facts:
    """A mode's round against serial's: the clause several findings share."""
    return {"mode_s": mode.median_round_s or 0.0, "serial_s": serial.median_round_s or 0.0,
            "speedup": ratio}


def measured_rounds(mode: ModeResult) -> int:
    return sum(1 for r in mode.rounds if not r.warmup)


def device_train_times(mode: ModeResult) -> dict[str, float]:
    """Seconds of client training per device, summed over the measured rounds."""
    per = {d: 0.0 for d in mode.devices}
    for r in mode.rounds:
        if r.warmup:
            continue
        for c in r.clients:
            per[c.device] = per.get(c.device, 0.0) + c.train_s
    return per


def device_client_counts(mode: ModeResult) -> dict[str, int]:
    """Clients trained per device, summed over the measured rounds."""
    counts = {d: 0 for d in mode.devices}
    for r in mode.rounds:
        if r.warmup:
            continue
        for c in r.clients:
            counts[c.device] = counts.get(c.device, 0) + 1
    return counts


def runs_threads(mode: ModeResult) -> bool:
    """The mode trains its clients in threads of one process (as its result records)."""
    return facts_of(mode).kind == KIND_THREAD
