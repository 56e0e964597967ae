"""The two pool modes, which differ only in where their worker processes go.

- ``multiprocess``: ``--workers`` processes, all on device 0. Each process has its own CUDA
  context on the one GPU; the GPU time-slices between them.
- ``multi-gpu``: ``--workers-per-device`` processes on every device, clients going to devices
  by ``--assign`` (round-robin: client % k; balanced: longest first onto the least loaded
  device; dynamic: a shared queue).
"""

from __future__ import annotations

from gpubench.modes.facts import FACTS, placed
from gpubench.modes.pool import WorkerSpec
from gpubench.modes.processes import ProcessModeBase, plan_workers


class _PoolMode(ProcessModeBase):
    def make_specs(self) -> list[WorkerSpec]:
        devices, per_device = placed(self.facts, self.plan.devices, self.plan.config)
        return plan_workers(self.plan, devices, per_device, self.dynamic)


class MultiprocessMode(_PoolMode):
    name = "multiprocess"
    facts = FACTS[name]


class MultiGpuMode(_PoolMode):
    name = "multi-gpu"
    facts = FACTS[name]
