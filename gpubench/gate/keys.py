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

CPU_KINDS = ("cpu", "cpu-slot")


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


def _ids(results: Results) -> list[str]:
    ids = results.config.get("device_ids")
    if isinstance(ids, (list, tuple)) and ids and all(isinstance(i, str) for i in ids):
        return list(ids)
    return sorted({d for m in results.modes for d in m.devices})


def device_count(results: Results) -> int | None:
    """How many devices the run used, from the most specific record available."""
    config = results.config
    ids = config.get("device_ids")
    if isinstance(ids, (list, tuple)) and ids:
        return len(ids)
    count = config.get("device_count")
    if isinstance(count, int) and not isinstance(count, bool):
        return count
    used = {d for m in results.modes for d in m.devices}
    if used:
        return len(used)
    spec = str(config.get("devices", "")).strip().lower()
    kind, _, rest = spec.partition(":")
    if kind == "cpu" and rest.isdigit():
        return int(rest)
    if kind == "cuda" and rest:
        return len([p for p in rest.split(",") if p.strip()])
    if spec.isdigit():
        return int(spec)
    return len(results.devices) or None  # every device found, used or not: a last resort


def _kind_of(device: str) -> str:
    kind = device.partition(":")[0].strip().lower()
    return "cpu" if kind in CPU_KINDS else kind


def device_kind(results: Results) -> str | None:
    """``cpu`` (CPU slots), ``cuda``, or both joined by ``+``; None when not recorded."""
    kinds = {_kind_of(d) for d in _ids(results) if d}
    if not kinds:
        spec = str(results.config.get("devices", "")).strip().lower()
        if spec.startswith(("cpu", "cuda")):
            kinds = {_kind_of(spec)}
    return "+".join(sorted(kinds)) if kinds else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def run_key(results: Results) -> RunKey:
    config = results.config
    case = config.get("case")
    samples = config.get("samples_per_client")
    return RunKey(
        case=str(case) if case is not None else None,
        clients=_int(config.get("clients")),
        devices=device_count(results),
        device_kind=device_kind(results),
        batch_size=_int(config.get("batch_size")),
        samples_per_client=str(samples) if samples is not None else None,
        local_epochs=_int(config.get("local_epochs")),
    )
