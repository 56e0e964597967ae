"""A persistent pool of worker processes (spawn) that train clients on their devices.

Workers start once, bind to their device, build their model and their clients' data once,
and are reused every round. Weights move through shared memory: one flat tensor holds the
global model, one row per client holds its update; pipes carry only small messages.

The parent waits on the workers' pipes *and* their process sentinels, so a worker that dies
(killed, segfault, out of memory) fails the mode at once, not at a timeout. Workers ignore
SIGINT (the parent owns Ctrl-C; see ``_sigint_deferred``), die with the parent (PR_SET_PDEATHSIG, and EOF on their
pipe), and are terminated, then killed, by ``close()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import signal
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

import torch
import torch.multiprocessing as tmp

from gpubench.config import TrainConfig
from gpubench.cuda import peak_memory, reset_peak_memory
from gpubench.devices import Device
from gpubench.isolation import bind_process, openmp_wait_for_children
from gpubench.modes.base import ModeFailure
from gpubench.results import ClientTiming, WorkerMemory


@dataclass(frozen=True)
class WorkerSpec:
    worker: int
    device: Device
    clients: tuple[int, ...]


@dataclass(frozen=True)
class WorkerSetup:
    case: str
    train: TrainConfig
    sizes: tuple[int, ...]
    # "module:function" building the worker's trainer: (setup, spec, torch_device) -> object
    # with run_round(global_state, updates) -> list[ClientTiming].
    trainer: str = "gpubench.modes.pool:make_client_loop"
    options: Mapping[str, Any] | None = None


class ClientLoop:
    """The default worker body: this worker's clients one after another."""

    def __init__(self, setup: WorkerSetup, spec: WorkerSpec, torch_device: str) -> None:
        from gpubench.cases import load_case
        from gpubench.fl import ClientTrainer, build_datasets

        case = load_case(setup.case)
        data = build_datasets(case, setup.train, spec.clients, setup.sizes, torch_device)
        self.clients = spec.clients
        self.trainer = ClientTrainer(
            case, setup.train, torch_device, spec.device.id, spec.worker, data
        )

    def run_round(
        self,
        global_state: torch.Tensor,
        updates: torch.Tensor,
        clients: Sequence[int] | None = None,
    ) -> list[ClientTiming]:
        chosen = self.clients if clients is None else clients
        return [self.trainer.run(c, global_state, updates[c]) for c in chosen]


def make_client_loop(setup: WorkerSetup, spec: WorkerSpec, torch_device: str) -> ClientLoop:
    return ClientLoop(setup, spec, torch_device)


def die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: EOF on the pipe still ends the worker
        pass


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def worker_main(
    spec: WorkerSpec,
    setup: WorkerSetup,
    global_state: torch.Tensor,
    updates: torch.Tensor,
    conn: Connection,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited already; kept explicit
    die_with_parent()
    try:
        torch_device = bind_process(spec.device)
        module_name, _, attr = setup.trainer.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        body = factory(setup, spec, torch_device)
        if torch_device.startswith("cuda"):
            torch.zeros(1, device=torch_device)  # create the CUDA context now: cold start
    except BaseException as exc:  # report, then exit: the parent fails the mode
        conn.send(("error", f"worker {spec.worker} on {spec.device.id} failed to start: "
                   f"{_describe(exc)}", traceback.format_exc()))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] != "round":
            return
        try:
            reset_peak_memory(torch_device)
            if len(msg) > 1:  # dynamic assignment: these clients only
                timings = body.run_round(global_state, updates, msg[1])
            else:
                timings = body.run_round(global_state, updates)
            allocated, reserved = peak_memory(torch_device)
            rss = _rss()
            memory = WorkerMemory(spec.worker, spec.device.id, os.getpid(), allocated, reserved, rss)
            conn.send(("done", timings, memory))
        except Exception as exc:
            conn.send(("error", _describe(exc), traceback.format_exc()))


def _rss() -> int | None:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return None


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
def _sigint_deferred() -> Iterator[None]:
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
        self.global_state = torch.zeros(state_size).share_memory_()
        self.updates = torch.zeros(clients, state_size).share_memory_()
        self.procs: list[Any] = []
        self.conns: list[Connection] = []
        self.worker_pids: dict[int, str] = {}

    def start(self) -> None:
        ctx = tmp.get_context("spawn")
        with _sigint_deferred(), openmp_wait_for_children():
            for spec in self.specs:
                parent_end, child_end = ctx.Pipe()
                proc = ctx.Process(
                    target=worker_main,
                    args=(spec, self.setup, self.global_state, self.updates, child_end),
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

    def run_round(
        self, global_state: torch.Tensor
    ) -> tuple[torch.Tensor, list[ClientTiming], list[WorkerMemory]]:
        self.global_state.copy_(global_state)
        if self.dynamic:
            return self._run_dynamic()
        for conn in self.conns:
            conn.send(("round",))
        replies = self._collect("done", self.timeout_s)
        timings: list[ClientTiming] = []
        memory: list[WorkerMemory] = []
        for i in sorted(replies):
            timings.extend(replies[i][1])
            memory.append(replies[i][2])
        return self.updates, timings, memory

    def _run_dynamic(self) -> tuple[torch.Tensor, list[ClientTiming], list[WorkerMemory]]:
        """A shared queue: each worker gets the next client as soon as it is free, so a
        faster (or less loaded) device trains more clients."""
        queue = list(range(self.clients))
        queue.reverse()
        timings: list[ClientTiming] = []
        memory: dict[int, WorkerMemory] = {}
        busy: list[int] = []
        for i, conn in enumerate(self.conns):
            if queue:
                conn.send(("round", [queue.pop()]))
                busy.append(i)
        while busy:
            for i, msg in self._collect("done", self.timeout_s, only=busy).items():
                timings.extend(msg[1])
                memory[i] = memory[i].merged(msg[2]) if i in memory else msg[2]
                busy.remove(i)
                if queue:
                    self.conns[i].send(("round", [queue.pop()]))
                    busy.append(i)
        return self.updates, timings, [memory[i] for i in sorted(memory)]

    def _collect(
        self, kind: str, timeout_s: float | None, only: Sequence[int] | None = None
    ) -> dict[int, tuple[Any, ...]]:
        """Wait for a reply from each worker (or those in ``only``; then the first replies
        are enough); a worker's death fails the mode at once."""
        wanted = range(len(self.conns)) if only is None else only
        pending = {id(self.conns[i]): i for i in wanted}
        sentinels = {p.sentinel: i for i, p in enumerate(self.procs)}
        out: dict[int, tuple[Any, ...]] = {}
        eof: set[int] = set()  # pipes closed by a worker that has died
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
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
                    raise ModeFailure(msg[1])
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
