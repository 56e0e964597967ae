"""``multiprocess``: ``--workers`` processes, all on device 0.

Each process has its own CUDA context on the one GPU; the GPU time-slices between them.
"""

from __future__ import annotations

from gpubench.modes.pool import WorkerSpec
from gpubench.modes.processes import ProcessModeBase, plan_workers


class MultiprocessMode(ProcessModeBase):
    name = "multiprocess"

    def make_specs(self) -> list[WorkerSpec]:
        return plan_workers(
            self.plan, self.plan.devices[:1], self.plan.config.workers, self.dynamic
        )
