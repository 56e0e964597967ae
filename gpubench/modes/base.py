"""The protocol every execution mode follows, and what a round hands back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from gpubench.config import RunConfig
from gpubench.machine.devices import Device
from gpubench.results import ClientTiming, ModeFacts, OpTrace, WorkerMemory

if TYPE_CHECKING:
    import torch


def process_rss() -> int | None:
    """This process's resident memory in bytes (None where psutil cannot tell)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # psutil missing or refused: memory is optional
        return None


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (just the type when the message is empty)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class ModeFailure(RuntimeError):
    """The mode cannot go on (a worker died, a client raised, a timeout); says why.

    ``detail``: the whole traceback where the failure came from another process.
    """

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.detail = detail


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
    """What a round hands back; nothing in it grows with clients x model.

    ``partials``: one float64 vector per worker, the sum over its clients of samples x update
    (trained state minus the round's global model); ``weights``: the samples each partial
    sum holds. ``fingerprints``: (clients x K) float64, row c the fingerprint of client c's
    update (:class:`gpubench.train.updates.Sketch`); the harness made it NaN before the round, so
    a client nobody trained shows. A mode whose engine aggregates itself (flower) hands back
    its aggregate as one partial sum: (aggregate - global) x total weight.
    """

    partials: list[torch.Tensor]
    weights: list[float]
    fingerprints: torch.Tensor
    clients: list[ClientTiming]  # start_s/end_s absolute perf_counter values
    memory: list[WorkerMemory] = field(default_factory=list)
    # ``--profile-ops``: each worker's profiler trace of this round (a profiled round only).
    op_traces: list[OpTrace] = field(default_factory=list)


class ModeDefaults:
    """What a mode says about itself unless it knows better."""

    # What it is: every mode says (gpubench.modes.facts.FACTS[name] for a built-in one).
    facts: ClassVar[ModeFacts]

    # On CUDA a mode that runs other (equally valid) kernels than serial widens its
    # tolerance by this factor (vectorized: batched convolutions in TF32), never past
    # gpubench.run.equivalence.MAX_TOLERANCE (decide_tolerance).
    cuda_tolerance_scale: ClassVar[float] = 1.0

    def not_reproducible(self, draws_global_rng: bool) -> str | None:
        """Why this mode cannot compute serial's result for this case (None: it can).

        ``draws_global_rng``: the case's training draws from torch's global RNG (Dropout).
        """
        return None

    def extra_record(self) -> Mapping[str, Any]:
        """What this mode records of its own in the results (``ModeExtra``), after its rounds."""
        return {}

    def startup_parts(self) -> Mapping[str, float]:
        """The parts of its cold start this mode can tell apart, in seconds (after start)."""
        return {}

    def worker_settings(self) -> Mapping[str, Mapping[str, Any]]:
        """Each worker process's torch settings as it reported them (by worker number; after
        start); empty for a mode that trains in the calling process."""
        return {}

    def engine(self) -> Mapping[str, Any]:
        """How a mode that runs another engine ran it (flower: ``flwr run`` and Flower's
        version; after start); empty for gpubench's own modes."""
        return {}

    def profile_next_round(self, directory: str) -> bool:
        """Run the next round with torch.profiler on in every worker, each writing its trace
        under ``directory`` (``RoundOutput.op_traces``); False: this mode cannot (its
        workers are another engine's)."""
        return False

    def live_fingerprints(self, fingerprints: torch.Tensor) -> torch.Tensor:
        """Where this round's fingerprints appear as clients finish (the progress display
        counts the rows filled so far): the harness's tensor for a mode that fills it as it
        goes; a process mode's shared rows."""
        return fingerprints


class Mode(Protocol):
    name: ClassVar[str]
    # What the mode is (kind, placement, daemons, MPS twin): gpubench.modes.facts.FACTS[name]
    # for a built-in mode.
    facts: ClassVar[ModeFacts]
    cuda_tolerance_scale: ClassVar[float]

    def not_reproducible(self, draws_global_rng: bool) -> str | None: ...

    def extra_record(self) -> Mapping[str, Any]: ...

    def startup_parts(self) -> Mapping[str, float]: ...

    def worker_settings(self) -> Mapping[str, Mapping[str, Any]]: ...

    def engine(self) -> Mapping[str, Any]: ...

    def live_fingerprints(self, fingerprints: torch.Tensor) -> torch.Tensor: ...

    def profile_next_round(self, directory: str) -> bool: ...

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

    def run_round(self, global_state: torch.Tensor, fingerprints: torch.Tensor) -> RoundOutput:
        """Train every client once from ``global_state``; write client c's fingerprint into
        ``fingerprints[c]`` (a NaN-filled host tensor, shared memory for process modes)."""
        ...

    def close(self) -> None:
        """Release everything; must be safe to call twice and after a failure."""
        ...
