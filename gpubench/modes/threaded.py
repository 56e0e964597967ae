"""``threaded``: a thread pool in the calling process, every thread on device 0.

This is what ``ThreadPoolExecutor`` around a training function does: the threads share one
device (and, on CUDA, its default stream), and the GIL serialises their Python work.

The threads live for one round (a pool per round, as client code that wraps a round in
``with ThreadPoolExecutor(...)`` has), while the model replicas persist. Threads kept alive
between rounds would slow the other in-process modes of an interleaved run: each thread that
ran torch ops owns an OpenMP team, and once a process has more OpenMP threads than cores,
libgomp stops spinning between parallel regions (its "throttled" wait, ~100 spins), so
serial's many small regions sleep and wake. Measured (cnn, 6 clients, batch 32, one slot of
two cores): serial 0.17 s per round, 0.27-0.34 s while a threaded pool that had run a round
was alive, 0.17 s again once its threads had ended.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor

import torch

from gpubench.machine.isolation import pinned_thread
from gpubench.modes.base import RoundOutput
from gpubench.modes.facts import FACTS
from gpubench.modes.inprocess import CLIENT_THREADS, InProcessBase
from gpubench.results import ClientTiming
from gpubench.train.fl import Trainer


class ThreadedMode(InProcessBase):
    name = "threaded"
    facts = FACTS[name]

    def start(self) -> None:
        super().start()
        self.free: queue.Queue[Trainer] = queue.Queue()
        for t in self.trainers:
            self.free.put(t)

    def not_reproducible(self, draws_global_rng: bool) -> str | None:
        if draws_global_rng:
            return (
                "the case draws from torch's global RNG (e.g. Dropout, or a "
                "DataLoader(shuffle=True) without a generator), which every thread shares: "
                "which thread draws next depends on timing; for the loader, pass "
                "generator=torch.Generator().manual_seed(partition_id)"
            )
        return None

    def _one(self, client: int, fingerprints: torch.Tensor) -> ClientTiming:
        trainer = self.free.get()  # each replica has its own sink: no two threads share one
        try:
            with pinned_thread(self.device):
                return trainer.run(client, fingerprints)
        finally:
            self.free.put(trainer)

    def close(self) -> None:
        self.free = queue.Queue()  # the replicas, released with the mode
        super().close()

    def run_round(self, global_state: torch.Tensor, fingerprints: torch.Tensor) -> RoundOutput:
        assert self.trainers, "start() first"
        self._begin(global_state)
        with self.in_slot(), self.profiled():
            pool = ThreadPoolExecutor(self.replicas_wanted, thread_name_prefix=CLIENT_THREADS)
            try:
                futures = [pool.submit(self._one, c, fingerprints)
                           for c in range(self.plan.clients)]
                timings = [f.result() for f in futures]
            finally:  # the threads end with the round, also when a client raised
                pool.shutdown(wait=True, cancel_futures=True)
        return self._output(fingerprints, timings)
