"""``serial``: clients one after another in the calling process, on device 0 (the baseline)."""

from __future__ import annotations

import torch

from gpubench.isolation import pinned_thread
from gpubench.modes.base import RoundOutput
from gpubench.modes.inprocess import InProcessBase


class SerialMode(InProcessBase):
    name = "serial"

    def run_round(self, global_state: torch.Tensor) -> RoundOutput:
        trainer = self.trainers[0]
        timings = []
        with pinned_thread(self.device):
            for client in range(self.plan.clients):
                timings.append(trainer.run(client, global_state, self.states[client]))
        return RoundOutput(self.states, timings, self._memory())
