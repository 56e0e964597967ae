"""The two pool modes, which differ only in where their worker processes go.

- ``multiprocess``: ``--workers`` processes, all on device 0. Each process has its own CUDA
  context on the one GPU; the GPU time-slices between them.
- ``multi-gpu``: ``--workers-per-device`` processes on every device, clients going to devices
  by ``--assign`` (round-robin: client % k; balanced: longest first onto the least loaded
  device; dynamic: a shared queue).
"""

from __future__ import annotations

from gpubench.machine.devices import Device
from gpubench.modes.pool import WorkerSpec
from gpubench.modes.processes import ProcessModeBase, plan_workers


class _PoolMode(ProcessModeBase):
    def placement(self) -> tuple[tuple[Device, ...], int]:
        """The devices the workers go to, and how many workers each gets."""
        raise NotImplementedError

    def make_specs(self) -> list[WorkerSpec]:
        devices, per_device = self.placement()
        return plan_workers(self.plan, devices, per_device, self.dynamic)


class MultiprocessMode(_PoolMode):
    name = "multiprocess"

    def placement(self) -> tuple[tuple[Device, ...], int]:
        return self.plan.devices[:1], self.plan.config.workers


class MultiGpuMode(_PoolMode):
    name = "multi-gpu"

    def placement(self) -> tuple[tuple[Device, ...], int]:
        return self.plan.devices, self.plan.config.workers_per_device
