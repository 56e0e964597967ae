"""What a monitoring backend gives the sampler: one :class:`Reading` per device per tick."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class Reading:
    """One sample of one device; a field is ``None`` when the backend cannot measure it."""

    util_pct: float | None = None
    mem_bytes: int | None = None
    mem_reserved_bytes: int | None = None
    power_w: float | None = None
    energy_j: float | None = None  # a counter: only differences mean anything
    sm_active_pct: float | None = None
    # Share of the device's capacity used by the watched processes themselves (host: their
    # CPU time over the slot's cores), so that another program's load on a slot shows as such.
    own_util_pct: float | None = None
    process_mem_bytes: dict[int, int] = field(default_factory=dict)  # watched pids only


class Probe(Protocol):
    """A backend. ``read`` runs on the sampler thread only and must not raise for a field
    that is missing: it leaves that field ``None``."""

    backend: str
    fields: dict[str, str]  # field name -> what it measures, for the results file

    def read(self, pids_by_device: Mapping[str, Sequence[int]]) -> dict[str, Reading]: ...

    def notes(self) -> list[str]:
        """What was not measured and why (collected when the results are written)."""
        ...

    def close(self) -> None: ...
