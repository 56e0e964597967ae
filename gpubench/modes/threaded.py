"""``threaded``: a thread pool in the calling process, every thread on device 0.

This is what ``ThreadPoolExecutor`` around a training function does: the threads share one
device (and, on CUDA, its default stream), and the GIL serialises their Python work.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor

import torch

from gpubench.fl import ClientTrainer
from gpubench.isolation import pinned_thread
from gpubench.modes.base import Plan, RoundOutput
from gpubench.modes.inprocess import InProcessBase
from gpubench.results import ClientTiming


class ThreadedMode(InProcessBase):
    name = "threaded"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.replicas_wanted = plan.config.workers
        self.pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        super().start()
        self.free: queue.Queue[ClientTrainer] = queue.Queue()
        for t in self.trainers:
            self.free.put(t)
        self.pool = ThreadPoolExecutor(self.replicas_wanted, thread_name_prefix="gpubench-client")

    def _one(self, client: int, global_state: torch.Tensor) -> ClientTiming:
        trainer = self.free.get()
        try:
            with pinned_thread(self.device):
                return trainer.run(client, global_state, self.states[client])
        finally:
            self.free.put(trainer)

    def run_round(self, global_state: torch.Tensor) -> RoundOutput:
        assert self.pool is not None, "start() first"
        futures = [
            self.pool.submit(self._one, c, global_state) for c in range(self.plan.clients)
        ]
        timings = [f.result() for f in futures]
        return RoundOutput(self.states, timings, self._memory())

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        super().close()
