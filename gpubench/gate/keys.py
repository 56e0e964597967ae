"""What a run is, and whether two runs measured the same work (pure: no I/O).

A speedup travels between runs only when both trained the same thing on the same kind and
number of devices: the case, the client count, the batch size, the samples per client and
the local epochs, and the device kind and count. Runs that differ in any of them are not
compared at all (the CLI's exit 2, naming what differs); a setting one run does not record
(an older file, a pytest-benchmark file) is not held against it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from gpubench.results import Results


@dataclass(frozen=True)
class RunKey:
    """What must be equal for two runs to be comparable (None: not recorded)."""

    case: str | None
    clients: int | None = None
    devices: int | None = None
    device_kind: str | None = None  # "cpu", "cuda", or "cpu+cuda"
    batch_size: int | None = None
    samples_per_client: str | None = None  # "512", or "LOW..HIGH"
    local_epochs: int | None = None

    def describe(self) -> str:
        parts = [f"case {self.case!r}" if self.case is not None else "an unnamed case"]
        if self.clients is not None:
            parts.append(f"{self.clients} clients")
        if self.devices is not None:
            kind = f" {self.device_kind}" if self.device_kind else ""
            parts.append(f"{self.devices}{kind} devices")
        return ", ".join(parts)


# field -> how a difference is named
_NAMES = {
    "case": "case",
    "device_kind": "device kind",
    "devices": "device count",
    "clients": "client count",
    "batch_size": "batch size",
    "samples_per_client": "samples per client",
    "local_epochs": "local epochs",
}


def differences(current: RunKey, baseline: RunKey) -> list[str]:
    """What keeps the two runs from being comparable, e.g. ``batch size (64 vs 128)``."""
    diffs = []
    for f in fields(RunKey):
        a, b = getattr(current, f.name), getattr(baseline, f.name)
        if f.name != "case" and (a is None or b is None):
            continue
        if a != b:
            shown = (repr(a), repr(b)) if f.name == "case" else (a, b)
            diffs.append(f"{_NAMES[f.name]} ({shown[0]} vs {shown[1]})")
    return diffs


def device_count(results: Results) -> int | None:
    """How many devices the run used (:attr:`Results.device_count`)."""
    return results.device_count


def device_kind(results: Results) -> str | None:
    """``cpu`` (CPU slots), ``cuda``, or both joined by ``+`` (:attr:`Results.device_kind`)."""
    return results.device_kind


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def run_key(results: Results) -> RunKey:
    config = results.config
    case = config.case
    samples = config.samples_per_client
    return RunKey(
        case=str(case) if case is not None else None,
        clients=_int(config.clients),
        devices=device_count(results),
        device_kind=device_kind(results),
        batch_size=_int(config.batch_size),
        samples_per_client=str(samples) if samples is not None else None,
        local_epochs=_int(config.local_epochs),
    )
