"""What the in-process modes share: data and model replicas on device 0 of this process."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping

import torch

from gpubench.cases import load_case
from gpubench.machine.cuda import (
    memory_in_use,
    peak_memory,
    release_device_memory,
    reset_peak_memory,
)
from gpubench.machine.devices import Device, torch_device_in_process
from gpubench.machine.isolation import pin_in_process, steady_host_allocator
from gpubench.modes.base import ModeDefaults, Plan, RoundOutput, process_rss
from gpubench.modes.facts import placed
from gpubench.modes.profiling import op_profiler, trace_file
from gpubench.results import ClientTiming, OpTrace, WorkerMemory
from gpubench.train.fl import Trainer, build_datasets, make_trainer

# The name prefix of the threaded and streams modes' client threads.
CLIENT_THREADS = "gpubench-client"


class InProcessBase(ModeDefaults):
    """Clients train in the calling process on device 0 (a GPU, or CPU slot 0)."""
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        # One replica per thread of a thread mode, serial's one (the mode's facts say which).
        self.replicas_wanted = placed(self.facts, plan.devices, plan.config)[1]
        self.device: Device = plan.devices[0]
        self.torch_device = torch_device_in_process(self.device)
        self.trainers: list[Trainer] = []
        self._threads_before: int | None = None
        # Allocator bytes (allocated, reserved): what start() added, and in use as a round began.
        self._own = self._round_start = (0, 0)
        # --profile-ops: the folder the next round's profile goes to, and the traces written.
        self._profile_dir: str | None = None
        self._op_traces: list[OpTrace] = []

    @property
    def device_ids(self) -> tuple[str, ...]:
        return (self.device.id,)

    @property
    def workers(self) -> int:
        return self.replicas_wanted

    def pids(self) -> Mapping[int, str]:
        return {os.getpid(): self.device.id}

    def start(self) -> None:
        threads = self.plan.config.train.pipeline.torch_threads
        if not self.device.is_cuda:
            # Like one GPU, one CPU slot offers its cores and no more (unless --torch-threads
            # says how many threads this process's ops use).
            steady_host_allocator()
            threads = threads or len(self.device.cores)
        if threads is not None:
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(threads)
        before = memory_in_use(self.torch_device)
        case = load_case(self.plan.config.case)
        data = build_datasets(
            case,
            self.plan.config.train,
            range(self.plan.clients),
            self.plan.sizes,
            self.torch_device,
        )
        self.trainers = [
            make_trainer(case, self.plan.config.train, self.torch_device, self.device.id, w, data)
            for w in range(self.replicas_wanted)
        ]
        after = memory_in_use(self.torch_device)
        self._own = (after[0] - before[0], after[1] - before[1])

    @contextlib.contextmanager
    def in_slot(self) -> Iterator[None]:
        """The block runs with every thread of this process that does the mode's work (the
        calling thread, torch's OpenMP team, the mode's client threads) on slot 0's cores;
        other threads (the monitor's sampler, a progress display) are left alone."""
        me = threading.current_thread()
        spare = {
            t.native_id for t in threading.enumerate()
            if t is not me and t.native_id and not t.name.startswith(CLIENT_THREADS)
        }
        with pin_in_process(self.device, spare):
            yield

    def profile_next_round(self, directory: str) -> bool:
        self._profile_dir = directory
        return True

    @contextlib.contextmanager
    def profiled(self) -> Iterator[None]:
        """The round's training, under torch.profiler when the round is to be profiled: this
        process trains every client, so one trace (every thread's) under worker 0."""
        directory, self._profile_dir = self._profile_dir, None
        if directory is None:
            yield
            return
        path = trace_file(directory, 0, 0)
        with op_profiler(path, self.device.is_cuda):
            yield
        self._op_traces.append(OpTrace(0, self.device.id, path))

    def _begin(self, global_state: torch.Tensor) -> None:
        # The parent's allocator serves every in-process mode of the block and the harness:
        # this round's peak counts from what is allocated now, plus the mode's own replicas
        # and data (what its start allocated).
        reset_peak_memory(self.torch_device)
        self._round_start = memory_in_use(self.torch_device)
        for trainer in self.trainers:
            trainer.sink.begin(global_state)

    def _output(self, fingerprints: torch.Tensor, timings: list[ClientTiming]) -> RoundOutput:
        sinks = [t.sink for t in self.trainers]
        traces, self._op_traces = self._op_traces, []
        return RoundOutput(
            [s.finish() for s in sinks], [s.weight for s in sinks], fingerprints, timings,
            self._memory(), traces,
        )

    def _memory(self) -> list[WorkerMemory]:
        allocated, reserved = peak_memory(self.torch_device)
        if allocated is not None and reserved is not None:
            (a0, r0), (own_a, own_r) = self._round_start, self._own
            allocated = max(0, allocated - a0) + max(0, own_a)
            reserved = max(0, reserved - r0) + max(0, own_r)
        rss = process_rss()
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
        while self.trainers:
            close = getattr(self.trainers.pop(), "close", None)
            if close is not None:
                close()  # a loader's persistent workers stop with the mode
            del close
        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None
        # The replicas and their data are gone: collected, the allocator's cache handed back.
        release_device_memory([self.torch_device])
