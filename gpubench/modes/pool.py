"""A persistent pool of worker processes (spawn) that train clients on their devices.

Workers start once, bind to their device, build their model once (their clients' data as
each first trains, kept within the data budget), and are reused every round. Weights move
through shared memory: one flat tensor holds the global model, one row per worker its
partial sum, one small row per client its fingerprint; pipes carry only small messages.

The parent waits on the workers' pipes *and* their process sentinels, so a worker that dies
(killed, segfault, out of memory) fails the mode at once, not at a timeout. Workers ignore
SIGINT (the parent owns Ctrl-C; see ``sigint_deferred``), die with the parent (PR_SET_PDEATHSIG, and EOF on their
pipe), and are terminated, then killed, by ``close()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, NoReturn, Protocol

import torch
import torch.multiprocessing as tmp

from gpubench.config import TrainConfig
from gpubench.machine.cuda import peak_memory, reset_peak_memory
from gpubench.machine.devices import Device
from gpubench.machine.isolation import bind_process, openmp_wait_for_children, process_settings
from gpubench.machine.schedstat import count_whole_process
from gpubench.modes.base import ModeFailure, first_line, process_rss
from gpubench.modes.profiling import op_profiler, trace_file
from gpubench.results import ClientTiming, OpTrace, WorkerMemory


@dataclass(frozen=True)
class WorkerSpec:
    worker: int
    device: Device
    clients: tuple[int, ...]
    # Environment set after binding and before CUDA initialises (MPS: its pipe directory
    # and the GPU by UUID, over the binding's index).
    env: tuple[tuple[str, str], ...] = ()
    # Workers sharing this one's memory: those on its GPU, or every worker on CPU slots
    # (they share the host's); client data and stacked clients are sized by it.
    peers: int = 1
    # A CUDA worker's share of the host's cores (torch and OpenMP threads); 0: none set.
    threads: int = 0


@dataclass(frozen=True)
class WorkerSetup:
    case: str
    train: TrainConfig
    sizes: tuple[int, ...]
    # "module:function" building the worker's trainer: (setup, spec, torch_device) -> object
    # with run_round(global_state, updates) -> list[ClientTiming].
    trainer: str = "gpubench.modes.pool:make_client_loop"
    options: Mapping[str, Any] | None = None


class WorkerBody(Protocol):
    """What a worker runs: the clients it is given, into the round's shared buffers."""

    def begin(self, global_state: torch.Tensor, partial: torch.Tensor) -> None:
        """A round starts from ``global_state``; its partial sum goes into ``partial``."""

    def train(self, clients: Sequence[int] | None, fingerprints: torch.Tensor) -> list[ClientTiming]:
        """Train ``clients`` (None: all of this worker's), fingerprints into their rows."""

    def finish(self) -> float:
        """Complete the partial sum; the samples (weight) it holds."""


class ClientLoop:
    """The default worker body: this worker's clients one after another."""

    def __init__(self, setup: WorkerSetup, spec: WorkerSpec, torch_device: str) -> None:
        from gpubench.cases import load_case
        from gpubench.train.fl import build_datasets, make_trainer

        case = load_case(setup.case)
        data = build_datasets(
            case, setup.train, spec.clients, setup.sizes, torch_device, spec.peers
        )
        self.clients = spec.clients
        self.trainer = make_trainer(
            case, setup.train, torch_device, spec.device.id, spec.worker, data
        )

    def begin(self, global_state: torch.Tensor, partial: torch.Tensor) -> None:
        self.trainer.sink.begin(global_state, partial)

    def train(self, clients: Sequence[int] | None, fingerprints: torch.Tensor) -> list[ClientTiming]:
        chosen = self.clients if clients is None else clients
        return [self.trainer.run(c, fingerprints) for c in chosen]

    def finish(self) -> float:
        self.trainer.sink.finish()
        return self.trainer.sink.weight


def make_client_loop(setup: WorkerSetup, spec: WorkerSpec, torch_device: str) -> ClientLoop:
    return ClientLoop(setup, spec, torch_device)


def die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: EOF on the pipe still ends the worker
        pass


@dataclass(frozen=True)
class SharedRound:
    """The round's buffers in shared memory: the global model, every client's fingerprint,
    one partial sum and one weight per worker. The parent fills what a worker must write
    with NaN before each round, so a worker that skips its part cannot pass."""

    global_state: torch.Tensor  # (state,) float32
    fingerprints: torch.Tensor  # (clients x K) float64
    partials: torch.Tensor  # (workers x state) float64
    weights: torch.Tensor  # (workers,) float64

    @classmethod
    def allocate(cls, clients: int, workers: int, state_size: int) -> SharedRound:
        from gpubench.train.updates import FINGERPRINT_SIZE

        def shared(*shape: int, dtype: torch.dtype) -> torch.Tensor:
            # Zeroed where it lives: a private zero-filled tensor moved into shared memory
            # would add its size to the parent's peak for a moment.
            return torch.empty(*shape, dtype=dtype).share_memory_().zero_()

        return cls(
            shared(state_size, dtype=torch.float32),
            shared(clients, FINGERPRINT_SIZE, dtype=torch.float64),
            shared(workers, state_size, dtype=torch.float64),
            shared(workers, dtype=torch.float64),
        )

    def reset(self, global_state: torch.Tensor) -> None:
        self.global_state.copy_(global_state)
        self.fingerprints.fill_(float("nan"))
        # A worker zeroes its whole row when it begins; NaN in the first element is enough
        # to show a row nobody began (filling 2 x 90 MB would cost the round ~20 ms).
        self.partials[:, :1].fill_(float("nan"))
        self.weights.fill_(float("nan"))


def worker_main(
    spec: WorkerSpec,
    index: int,
    setup: WorkerSetup,
    shared: SharedRound,
    conn: Connection,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited already; kept explicit
    die_with_parent()
    count_whole_process()  # this process trains its clients one at a time: all its threads
    try:
        torch_device = bind_process(spec.device, spec.threads)
        os.environ.update(dict(spec.env))
        module_name, _, attr = setup.trainer.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        body = factory(setup, spec, torch_device)
        if torch_device.startswith("cuda"):
            torch.zeros(1, device=torch_device)  # create the CUDA context now: cold start
    except BaseException as exc:  # report, then exit: the parent fails the mode
        conn.send(("error", f"worker {spec.worker} on {spec.device.id} failed to start: "
                   f"{first_line(exc)}", traceback.format_exc()))
        return
    conn.send(("ready", os.getpid(), process_settings()))
    current = None  # the round this worker has begun
    profiles = 0  # the profiles this worker has written (--profile-ops)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            end_worker(body)
        if msg[0] not in ("round", "finish"):
            end_worker(body)
        try:
            # ("round", id, clients|None[, folder]): train them (None: all mine, then
            # finish), under torch.profiler when a folder for its trace is given;
            # ("finish", id): dynamic assignment's end of the round.
            kind, round_id = msg[0], msg[1]
            if round_id != current:
                reset_peak_memory(torch_device)
                body.begin(shared.global_state, shared.partials[index])
                current = round_id
            traces: list[str] = []
            if kind != "round":
                timings = []
            elif len(msg) > 3 and msg[3]:
                traces.append(trace_file(msg[3], spec.worker, profiles))
                profiles += 1
                with op_profiler(traces[-1], torch_device.startswith("cuda")):
                    timings = body.train(msg[2], shared.fingerprints)
            else:
                timings = body.train(msg[2], shared.fingerprints)
            weight = None
            if kind == "finish" or msg[2] is None:
                weight = body.finish()
                shared.weights[index] = weight
            allocated, reserved = peak_memory(torch_device)
            rss = process_rss()
            memory = WorkerMemory(spec.worker, spec.device.id, os.getpid(), allocated, reserved, rss)
            conn.send(("done", timings, memory, weight, traces))
        except Exception as exc:
            conn.send(("error", first_line(exc), traceback.format_exc()))


def end_worker(body: object) -> NoReturn:
    """End a worker whose work is done, without the interpreter's teardown.

    Everything the parent reads went through the pipe and shared memory already; what is
    left is finalizing every module this process imported, and with torch loaded (and
    ``torch._dynamo``, which ``torch.optim`` imports on first use) that costs each worker a
    second or more of a core, paid in every pool's close. The body's own resources (a
    loader's persistent workers, then its forkserver) are released first.
    """
    from gpubench.train.pipeline import stop_loader_server

    for owner in (body, getattr(body, "trainer", None)):
        close = getattr(owner, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()
    stop_loader_server()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C back while workers are being spawned.

    During the spawns SIGINT is both *ignored* and *blocked*. Ignored, because an ignored
    disposition survives exec, so the workers start with SIGINT ignored and a terminal's
    Ctrl-C (sent to the whole process group) never interrupts one halfway through its imports.
    Blocked, because Linux keeps a blocked signal pending even while it is ignored, so a Ctrl-C
    in this window is not lost: it reaches the parent the moment the window closes, as a
    KeyboardInterrupt right after the spawns. The parent owns Ctrl-C.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "pthread_sigmask"
    ):
        yield
        return
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    old_handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


class WorkerPool:
    def __init__(
        self,
        specs: Sequence[WorkerSpec],
        setup: WorkerSetup,
        clients: int,
        state_size: int,
        timeout_s: float | None = None,
        dynamic: bool = False,
    ) -> None:
        self.specs = list(specs)
        self.dynamic = dynamic
        self.clients = clients
        self.setup = setup
        self.timeout_s = timeout_s
        self.shared = SharedRound.allocate(clients, len(self.specs), state_size)
        self.round_id = 0
        self.procs: list[Any] = []
        self.conns: list[Connection] = []
        self.worker_pids: dict[int, str] = {}
        # Each worker's torch settings as it reported them when ready (by worker number).
        self.worker_settings: dict[int, dict[str, Any]] = {}
        # --profile-ops: the workers' profiler traces of the last round.
        self.op_traces: list[OpTrace] = []

    def start(self) -> None:
        ctx = tmp.get_context("spawn")
        with sigint_deferred(), openmp_wait_for_children():
            for index, spec in enumerate(self.specs):
                parent_end, child_end = ctx.Pipe()
                proc = ctx.Process(
                    target=worker_main,
                    args=(spec, index, self.setup, self.shared, child_end),
                    name=f"gpubench-worker-{spec.worker}",
                    daemon=True,
                )
                proc.start()
                child_end.close()
                self.procs.append(proc)
                self.conns.append(parent_end)
        # --timeout bounds a round; a start (imports, CUDA context) gets at least 5 minutes.
        start_limit = None if self.timeout_s is None else max(self.timeout_s, 300.0)
        for i, msg in self._collect("ready", start_limit).items():
            self.worker_pids[int(msg[1])] = self.specs[i].device.id
            self.worker_settings[self.specs[i].worker] = dict(msg[2])

    def run_round(
        self, global_state: torch.Tensor, profile: str | None = None
    ) -> tuple[list[ClientTiming], list[WorkerMemory]]:
        """One round into ``self.shared``; the timings and memory the workers reported.
        ``profile``: a folder where each worker writes its torch.profiler trace of the round
        (their paths in ``self.op_traces`` after it)."""
        self.shared.reset(global_state)
        self.round_id += 1
        self.op_traces = []
        if self.dynamic:
            return self._run_dynamic(profile)
        for conn in self.conns:
            conn.send(("round", self.round_id, None, profile))
        replies = self._collect("done", self.timeout_s)
        timings: list[ClientTiming] = []
        memory: list[WorkerMemory] = []
        for i in sorted(replies):
            timings.extend(replies[i][1])
            memory.append(replies[i][2])
            self._keep_traces(i, replies[i])
        return timings, memory

    def _keep_traces(self, i: int, reply: tuple[Any, ...]) -> None:
        spec = self.specs[i]
        self.op_traces.extend(OpTrace(spec.worker, spec.device.id, p) for p in reply[4])

    def _run_dynamic(
        self, profile: str | None = None
    ) -> tuple[list[ClientTiming], list[WorkerMemory]]:
        """A shared queue: each worker gets the next client as soon as it is free, so a
        faster (or less loaded) device trains more clients. Then every worker completes
        its partial sum."""
        queue = list(range(self.clients))
        queue.reverse()
        timings: list[ClientTiming] = []
        memory: dict[int, WorkerMemory] = {}
        busy: list[int] = []
        # --timeout bounds the whole round, not each client's turn.
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s

        def take(i: int, msg: tuple[Any, ...]) -> None:
            timings.extend(msg[1])
            memory[i] = memory[i].merged(msg[2]) if i in memory else msg[2]
            self._keep_traces(i, msg)

        for i, conn in enumerate(self.conns):
            if queue:
                conn.send(("round", self.round_id, [queue.pop()], profile))
                busy.append(i)
        while busy:
            for i, msg in self._collect("done", self.timeout_s, busy, deadline).items():
                take(i, msg)
                busy.remove(i)
                if queue:
                    self.conns[i].send(("round", self.round_id, [queue.pop()], profile))
                    busy.append(i)
        for conn in self.conns:
            conn.send(("finish", self.round_id))
        for i, msg in self._collect("done", self.timeout_s, None, deadline).items():
            take(i, msg)
        return timings, [memory[i] for i in sorted(memory)]

    def _collect(
        self,
        kind: str,
        timeout_s: float | None,
        only: Sequence[int] | None = None,
        deadline: float | None = None,
    ) -> dict[int, tuple[Any, ...]]:
        """Wait for a reply from each worker (or those in ``only``; then the first replies
        are enough); a worker's death fails the mode at once."""
        wanted = range(len(self.conns)) if only is None else only
        pending = {id(self.conns[i]): i for i in wanted}
        sentinels = {p.sentinel: i for i, p in enumerate(self.procs)}
        out: dict[int, tuple[Any, ...]] = {}
        eof: set[int] = set()  # pipes closed by a worker that has died
        if deadline is None and timeout_s is not None:
            deadline = time.monotonic() + timeout_s
        while pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            waitables: list[Any] = [self.conns[i] for i in pending.values()]
            waitables += list(sentinels)
            ready = wait(waitables, timeout=left)
            if not ready:
                late = ", ".join(str(self.specs[i].worker) for i in pending.values())
                raise ModeFailure(
                    f"timed out after {timeout_s:g} s waiting for worker(s) {late} ({kind})"
                )
            for r in ready:
                if isinstance(r, int):  # a sentinel: that process has ended
                    i = sentinels[r]
                    if i not in eof and id(self.conns[i]) in pending and self.conns[i].poll():
                        continue  # read what it said first (its pipe is ready too)
                    proc = self.procs[i]
                    proc.join(1)
                    spec = self.specs[i]
                    raise ModeFailure(
                        f"worker {spec.worker} (pid {proc.pid}, {spec.device.id}) died with "
                        f"{describe_exit(proc.exitcode)}"
                    )
                i = pending.pop(id(r))
                conn: Connection = r  # type: ignore[assignment]
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    pending[id(r)] = i
                    eof.add(i)
                    continue  # the sentinel reports the death
                if msg[0] == "error":
                    raise ModeFailure(msg[1], msg[2] if len(msg) > 2 else None)
                out[i] = msg
            if only is not None and out:
                return out
        return out

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("stop",))
        deadline = time.monotonic() + 3
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs:
            proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
        for conn in self.conns:
            conn.close()
        self.procs.clear()
        self.conns.clear()
