"""What a monitoring backend gives the sampler: one :class:`Reading` per device per tick."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("gpubench.monitor")


class LogOnce:
    """Log each (device, field) problem once, at INFO by default: a missing field is expected
    on many devices and is in the results' notes anyway."""

    def __init__(self, source: str, logger: logging.Logger | None = None) -> None:
        self._source = source
        self._log = logger or log
        self._seen: set[tuple[str, str]] = set()

    def __call__(self, device: str, name: str, message: str, level: int = logging.INFO) -> None:
        if (device, name) not in self._seen:
            self._seen.add((device, name))
            self._log.log(level, "%s %s on %s: %s", self._source, name, device, message)


@dataclass
class Reading:
    """One sample of one device; a field is ``None`` when the backend cannot measure it."""

    util_pct: float | None = None
    mem_bytes: int | None = None
    mem_reserved_bytes: int | None = None
    power_w: float | None = None
    energy_j: float | None = None  # a counter: only differences mean anything
    sm_active_pct: float | None = None  # GPM: % of SMs busy since the previous sample
    sm_occupancy_pct: float | None = None  # GPM: % of the SMs' warp slots in use
    # Share of the device's capacity used by the watched processes themselves (host: their
    # CPU time over the slot's cores), so that another program's load on a slot shows as such.
    own_util_pct: float | None = None
    # Share of the device's capacity used by programs outside the run's process tree.
    other_util_pct: float | None = None
    # The heaviest of those programs where they were named: (pid, command name, % of device).
    other_processes: list[tuple[int, str, float | None]] = field(default_factory=list)
    process_mem_bytes: dict[int, int] = field(default_factory=dict)  # watched pids only
    # The driver's own timestamped utilisation samples that are new since the previous read:
    # (window start, window end, %) in wall-clock seconds (time.time()); a sample's value is
    # the kernel-active share of its window.
    util_samples: list[tuple[float, float, float]] = field(default_factory=list)


class Probe(Protocol):
    """A backend. ``read`` runs on the sampler thread only and must not raise for a field
    that is missing: it leaves that field ``None``."""

    backend: str
    fields: dict[str, str]  # field name -> what it measures, for the results file
    # True when the device's ``mem`` is the sum of the watched processes' memory (the host):
    # a mode's peak is then taken from its own processes only.
    mem_is_process_sum: bool

    def read(self, pids_by_device: Mapping[str, Sequence[int]]) -> dict[str, Reading]: ...

    def notes(self) -> list[str]:
        """What was not measured and why (collected when the results are written)."""
        ...

    def close(self) -> None: ...
