"""``multi-gpu``: one worker process per device (``--workers-per-device`` for more).

Clients go to devices by ``--assign`` (round-robin: client % k; balanced: longest first onto
the least loaded device).
"""

from __future__ import annotations

from gpubench.modes.pool import WorkerSpec
from gpubench.modes.processes import ProcessModeBase, plan_workers


class MultiGpuMode(ProcessModeBase):
    name = "multi-gpu"

    def make_specs(self) -> list[WorkerSpec]:
        return plan_workers(
            self.plan, self.plan.devices, self.plan.config.workers_per_device, self.dynamic
        )
