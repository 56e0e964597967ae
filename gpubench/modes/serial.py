"""``serial``: clients one after another in the calling process, on device 0 (the baseline)."""

from __future__ import annotations

import torch

from gpubench.modes.base import RoundOutput
from gpubench.modes.facts import FACTS
from gpubench.modes.inprocess import InProcessBase


class SerialMode(InProcessBase):
    name = "serial"
    facts = FACTS[name]

    def run_round(self, global_state: torch.Tensor, fingerprints: torch.Tensor) -> RoundOutput:
        trainer = self.trainers[0]
        self._begin(global_state)
        timings = []
        with self.in_slot(), self.profiled():
            for client in range(self.plan.clients):
                timings.append(trainer.run(client, fingerprints))
        return self._output(fingerprints, timings)
