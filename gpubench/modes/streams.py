"""``streams``: the threaded mode with one CUDA stream per thread, on GPU 0.

Each model replica (``--workers`` of them) owns a stream; a thread trains its client with
that stream current, and synchronises only that stream before each timestamp, so kernels
of different clients may overlap on the GPU where they fit (small models, small batches).
The GIL still serialises the Python side of every step.

On CPU slots there is no stream to overlap: the mode is *not applicable* (status and reason
in the results), never silently dropped or run as plain threads.
"""

from __future__ import annotations

from typing import Any

import torch

from gpubench.machine.isolation import pinned_thread
from gpubench.modes.base import NotApplicable
from gpubench.modes.facts import FACTS
from gpubench.modes.threaded import ThreadedMode
from gpubench.results import ClientTiming

NOT_ON_CPU = "streams: CUDA streams need a GPU; on CPU slots there is nothing to overlap"


class StreamsMode(ThreadedMode):
    name = "streams"
    facts = FACTS[name]

    def start(self) -> None:
        if not self.device.is_cuda:
            raise NotApplicable(NOT_ON_CPU)
        super().start()
        self.streams: dict[int, Any] = {}
        for trainer in self.trainers:
            stream = torch.cuda.Stream(device=self.torch_device)
            self.streams[id(trainer)] = stream
            trainer.synchronize = stream.synchronize
        # Data and replicas were made on the default stream: finish that before other
        # streams read them.
        torch.cuda.synchronize(self.torch_device)

    def _begin(self, global_state: torch.Tensor) -> None:
        super()._begin(global_state)
        # The round's global model was copied on the default stream: finish that before the
        # clients' streams read it.
        torch.cuda.synchronize(self.torch_device)

    def _one(self, client: int, fingerprints: torch.Tensor) -> ClientTiming:
        trainer = self.free.get()
        try:
            with pinned_thread(self.device), torch.cuda.stream(self.streams[id(trainer)]):
                return trainer.run(client, fingerprints)
        finally:
            self.free.put(trainer)
