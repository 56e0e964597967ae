"""The protocol every execution mode follows, and what a round hands back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

from gpubench.config import RunConfig
from gpubench.devices import Device
from gpubench.results import ClientTiming, WorkerMemory

if TYPE_CHECKING:
    import torch


class ModeFailure(RuntimeError):
    """The mode cannot go on (a worker died, a client raised, a timeout); says why."""


class NotApplicable(RuntimeError):
    """The mode makes no sense on these devices (e.g. CUDA streams on CPU slots)."""


@dataclass(frozen=True)
class Plan:
    """Everything a mode needs to run the round; identical for every mode of a run."""

    config: RunConfig
    devices: tuple[Device, ...]
    sizes: tuple[int, ...]  # samples per client
    state_size: int

    @property
    def clients(self) -> int:
        return self.config.clients

    @property
    def work(self) -> list[float]:
        """Relative cost of each client (samples x epochs), for balanced assignment."""
        return [float(s * self.config.train.local_epochs) for s in self.sizes]


@dataclass
class RoundOutput:
    states: torch.Tensor  # (clients x state) rows in client order
    clients: list[ClientTiming]  # start_s/end_s absolute perf_counter values
    memory: list[WorkerMemory] = field(default_factory=list)


class Mode(Protocol):
    name: ClassVar[str]

    def __init__(self, plan: Plan) -> None: ...

    @property
    def device_ids(self) -> tuple[str, ...]: ...

    @property
    def workers(self) -> int: ...

    def pids(self) -> Mapping[int, str]:
        """Process ids doing this mode's work, with the device each one uses."""
        ...

    def start(self) -> None:
        """Cold start: processes, model, data, device context. Timed by the harness."""
        ...

    def run_round(self, global_state: torch.Tensor) -> RoundOutput: ...

    def close(self) -> None:
        """Release everything; must be safe to call twice and after a failure."""
        ...
