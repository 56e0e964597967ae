"""What the in-process modes share: data and model replicas on device 0 of this process."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from gpubench.cases import load_case
from gpubench.cuda import peak_memory, reset_peak_memory
from gpubench.devices import Device, torch_device_in_process
from gpubench.fl import ClientTrainer, build_datasets
from gpubench.isolation import steady_host_allocator
from gpubench.modes.base import Plan
from gpubench.results import WorkerMemory


class InProcessBase:
    """Clients train in the calling process on device 0 (a GPU, or CPU slot 0)."""

    replicas_wanted = 1

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.device: Device = plan.devices[0]
        self.torch_device = torch_device_in_process(self.device)
        self.trainers: list[ClientTrainer] = []
        self._threads_before: int | None = None

    @property
    def device_ids(self) -> tuple[str, ...]:
        return (self.device.id,)

    @property
    def workers(self) -> int:
        return self.replicas_wanted

    def pids(self) -> Mapping[int, str]:
        return {os.getpid(): self.device.id}

    def start(self) -> None:
        if not self.device.is_cuda:
            # Like one GPU, one CPU slot offers its cores and no more.
            steady_host_allocator()
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(len(self.device.cores))
        case = load_case(self.plan.config.case)
        data = build_datasets(
            case,
            self.plan.config.train,
            range(self.plan.clients),
            self.plan.sizes,
            self.torch_device,
        )
        self.trainers = [
            ClientTrainer(case, self.plan.config.train, self.torch_device, self.device.id, w, data)
            for w in range(self.replicas_wanted)
        ]
        self.states = torch.zeros(self.plan.clients, self.plan.state_size)

    def _memory(self) -> list[WorkerMemory]:
        allocated, reserved = peak_memory(self.torch_device)
        reset_peak_memory(self.torch_device)
        rss = None
        try:
            import psutil

            rss = int(psutil.Process().memory_info().rss)
        except Exception:  # psutil missing or refused: memory is optional
            pass
        return [
            WorkerMemory(
                worker=0,
                device=self.device.id,
                pid=os.getpid(),
                max_allocated_bytes=allocated,
                max_reserved_bytes=reserved,
                rss_bytes=rss,
            )
        ]

    def close(self) -> None:
        self.trainers = []
        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None
        if self.device.is_cuda:
            torch.cuda.empty_cache()
