"""What the process modes share: a persistent worker pool and its client plan."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import torch

from gpubench.assign import assign_clients
from gpubench.machine import cuda
from gpubench.machine.devices import Device
from gpubench.machine.isolation import cpu_share
from gpubench.modes import mode_facts
from gpubench.modes.base import ModeDefaults, ModeFailure, NotApplicable, Plan, RoundOutput
from gpubench.modes.pool import WorkerPool, WorkerSetup, WorkerSpec
from gpubench.results import KIND_PROCESS


def plan_workers(
    plan: Plan, devices: tuple[Device, ...], per_device: int, dynamic: bool = False
) -> list[WorkerSpec]:
    """Clients onto devices by the assignment policy, then onto each device's workers by the
    same policy. Workers without clients are not started.

    ``dynamic``: every worker may train every client (each makes the data of those it is
    handed) and the pool hands clients out at run time.
    """
    if dynamic:
        every = tuple(range(plan.clients))
        return with_peers([
            WorkerSpec(d * per_device + k, device, every)
            for d, device in enumerate(devices)
            for k in range(min(per_device, plan.clients))
        ][: max(plan.clients, 1)])
    on_device = assign_clients(plan.work, len(devices), plan.config.assign)
    specs: list[WorkerSpec] = []
    for d, device in enumerate(devices):
        mine = [c for c in range(plan.clients) if on_device[c] == d]
        if per_device > 1:
            # Within a device the same policy spreads the clients over its workers.
            sub = assign_clients([plan.work[c] for c in mine], per_device, plan.config.assign)
            groups = [[c for c, w in zip(mine, sub, strict=True) if w == k] for k in range(per_device)]
        else:
            groups = [mine]
        for group in groups:
            if group:
                specs.append(WorkerSpec(len(specs), device, tuple(group)))
    return with_peers(specs)


def with_peers(specs: list[WorkerSpec]) -> list[WorkerSpec]:
    """Each spec with the number of workers that share its memory (its GPU's, or the
    host's for CPU slots)."""
    def pool(s: WorkerSpec) -> str:
        return s.device.id if s.device.is_cuda else "host"

    counts = Counter(pool(s) for s in specs)
    share = cpu_share(sum(s.device.is_cuda for s in specs))
    return [replace(s, peers=counts[pool(s)], threads=share if s.device.is_cuda else 0)
            for s in specs]


def check_parent_gpu_shared(name: str, plan: Plan, devices: Sequence[Device]) -> None:
    """Refuse a mode whose processes would open a CUDA context on the parent's GPU when that
    GPU is in exclusive-process compute mode: the parent's context (its checks, noise floor
    and in-process modes) holds the GPU, and a worker's (or an MPS server's) would fail."""
    parent = plan.devices[0]
    if not parent.is_cuda or all(d.id != parent.id for d in devices):
        return
    in_parent = any(mode_facts(m).kind != KIND_PROCESS for m in plan.config.modes)
    if not (cuda.initialised() or in_parent):
        return
    from gpubench.monitor import nvml

    if nvml.compute_mode(parent) == "exclusive_process":
        raise NotApplicable(
            f"{name}: {parent.id} is in exclusive-process compute mode (NVML): the parent's "
            "CUDA context holds it, so no worker process or MPS server can open one there; "
            "run the process modes on the other GPUs (--devices), or in a run of their own "
            "without serial, threaded and streams"
        )


class WorkerSpecs(ModeDefaults):
    """Devices and worker count of a mode whose work is described by ``specs``."""

    name: ClassVar[str]
    specs: list[WorkerSpec]

    @property
    def device_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.device.id for s in self.specs))

    @property
    def workers(self) -> int:
        return len(self.specs)


class ProcessModeBase(WorkerSpecs):
    trainer = "gpubench.modes.pool:make_client_loop"
    # Whether ``--assign dynamic`` hands clients out at run time (else: a fixed schedule).
    supports_dynamic = True

    @property
    def dynamic(self) -> bool:
        return self.supports_dynamic and self.plan.config.assign == "dynamic"

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.specs = self.make_specs()
        self.pool: WorkerPool | None = None
        self._profile_dir: str | None = None  # --profile-ops: the next round's folder

    def make_specs(self) -> list[WorkerSpec]:
        raise NotImplementedError

    # Whether its workers are meant to be MPS clients (the +mps modes); the others are checked
    # not to be.
    expects_mps = False

    def pids(self) -> Mapping[int, str]:
        return dict(self.pool.worker_pids) if self.pool else {}

    def check_not_mps(self) -> None:
        """A plain mode's CUDA workers are time-sliced, not clients of some MPS daemon."""
        if self.expects_mps or not any(s.device.is_cuda for s in self.specs):
            return
        from gpubench.modes.mps import MpsAttachError, check_plain

        try:
            check_plain(self.pids(), [s.device for s in self.specs])
        except MpsAttachError as exc:
            raise ModeFailure(str(exc)) from None

    def worker_settings(self) -> Mapping[str, Mapping[str, Any]]:
        return {str(w): s for w, s in self.pool.worker_settings.items()} if self.pool else {}

    def start(self) -> None:
        check_parent_gpu_shared(self.name, self.plan, [s.device for s in self.specs])
        cfg = self.plan.config
        setup = WorkerSetup(
            case=cfg.case,
            train=cfg.train,
            sizes=self.plan.sizes,
            trainer=self.trainer,
            options=dict(cfg.options),
        )
        self.pool = WorkerPool(
            self.specs,
            setup,
            self.plan.clients,
            self.plan.state_size,
            cfg.timeout_s,
            dynamic=self.dynamic,
        )
        self.pool.start()
        self.check_not_mps()

    def live_fingerprints(self, fingerprints: torch.Tensor) -> torch.Tensor:
        return fingerprints if self.pool is None else self.pool.shared.fingerprints

    def profile_next_round(self, directory: str) -> bool:
        self._profile_dir = directory
        return True

    def run_round(self, global_state: torch.Tensor, fingerprints: torch.Tensor) -> RoundOutput:
        assert self.pool is not None, "start() first"
        profile, self._profile_dir = self._profile_dir, None
        timings, memory = self.pool.run_round(global_state, profile)
        shared = self.pool.shared
        fingerprints.copy_(shared.fingerprints)
        return RoundOutput(
            list(shared.partials), shared.weights.tolist(), fingerprints, timings, memory,
            list(self.pool.op_traces),
        )

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
