"""One client's local training.

Every mode trains clients through :class:`ClientTrainer` (or, for vectorized, the same
arithmetic batched) and hands each client's update to a :class:`gpubench.train.updates.UpdateSink`,
so the only thing that differs between modes is *where* and *when* a client trains. A model's
whole state (parameters and buffers) travels as one flat float32 vector.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from gpubench.cases import Case, client_sizes
from gpubench.cases.seeds import derive_seed
from gpubench.config import TrainConfig
from gpubench.machine.cuda import event_recorder, synchronize
from gpubench.machine.schedstat import start_waiting
from gpubench.results import ClientTiming
from gpubench.train.clientdata import ClientData
from gpubench.train.pipeline import (
    ClientSource,
    NullClock,
    PhaseClock,
    autocast,
    check_pipeline,
    cifar_pick,
    grad_scaler,
    load_cifar,
    loader_hint,
    set_torch_threads,
    start_loader_server,
)
from gpubench.train.updates import UpdateSink


def state_tensors(model: nn.Module) -> list[torch.Tensor]:
    """The model's state (parameters, then buffers, in state_dict order), sharing storage."""
    return list(model.state_dict(keep_vars=False).values())


def state_size(model: nn.Module) -> int:
    return sum(t.numel() for t in state_tensors(model))


def flatten_state(tensors: Sequence[torch.Tensor], out: torch.Tensor | None = None) -> torch.Tensor:
    """The state as one float32 vector; into ``out`` (on the tensors' device) if given, with
    no temporary (a fresh 45 MB vector per ResNet-18 client costs ~20 ms of page faults)."""
    parts = [t.detach().reshape(-1).to(torch.float32) for t in tensors]
    if out is None:
        return torch.cat(parts).cpu()
    torch.cat(parts, out=out)
    return out


@torch.no_grad()
def load_state(tensors: Sequence[torch.Tensor], flat: torch.Tensor) -> None:
    if tensors:
        flat = flat.to(tensors[0].device, non_blocking=True)
    at = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[at : at + n].view_as(t))
        at += n


def initial_global_state(case: Case, seed: int, step: int = 0) -> torch.Tensor:
    """The global model of round ``step`` (warm-up rounds count), built in the parent.

    Every round starts from a model of its own (a fresh initialisation from the seed and the
    round), the same in every mode: the same work each round, and a mode that hands back
    anything from an earlier round cannot pass for this one.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init", step))
        model = case.build_model()
    return flatten_state(state_tensors(model))


def seed_client_rngs(seed: int, client: int, epoch: int) -> None:
    """Seed every RNG a client's code can reach from (seed, client, epoch): torch's CPU and
    CUDA generators (Dropout draws from them), Python's and NumPy's global ones."""
    s = derive_seed(seed, "rng", client, epoch)
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s % (1 << 32))


@contextlib.contextmanager
def client_rngs(torch_device: str) -> Iterator[None]:
    """Restore the global RNGs after a client, so nothing else sees its seeding."""
    cuda = [torch.device(torch_device).index or 0] if torch_device.startswith("cuda") else []
    py_state = random.getstate()
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=cuda):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def local_train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    client: int,
    loss_fn: Callable[[Any, Any], Any],
    opt: torch.optim.Optimizer | None = None,
) -> None:
    """The client's local epochs over ``(x, y)`` through its pipeline (by default: SGD with
    momentum over shuffled slices of the two tensors); shuffling from the client's own
    generator, every other draw from the global RNGs seeded per (seed, client, epoch)."""
    device = str(x.device)
    source = ClientSource(cfg, client, x, y, device)
    try:
        train_epochs(model, opt or make_optimizer(model, cfg), source, cfg, client, loss_fn,
                     NullClock(), device)
    finally:
        source.close()


def train_epochs(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    source: ClientSource,
    cfg: TrainConfig,
    client: int,
    loss_fn: Callable[[Any, Any], Any],
    clock: PhaseClock,
    torch_device: str,
    synced: bool = False,
) -> None:
    """The step loop, each part charged to its phase: waiting for a batch (``data``), the copy
    to the device (``copy``), forward, backward and step (``compute``). ``synced``: wait for
    the device before each of those timestamps (CUDA); off by default, where the clock's
    events split the device's time between copy and compute once the client is done."""
    p = cfg.pipeline
    model.train()
    scaler = grad_scaler(p.amp, torch_device)
    non_blocking = p.pin_memory
    target = model_device(model)
    for epoch in range(cfg.local_epochs):
        seed_client_rngs(cfg.seed, client, epoch)
        for xb, yb in source.epoch(epoch):
            clock.tick("data")
            if xb.device != target:
                xb = xb.to(torch_device, non_blocking=non_blocking)
                yb = yb.to(torch_device, non_blocking=non_blocking)
                clock.tick("copy", synced)
            opt.zero_grad(set_to_none=True)
            with autocast(p.amp, torch_device):
                loss = loss_fn(model(xb), yb)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            if p.sync_loss:
                loss.item()
            clock.tick("compute", synced)
        clock.tick("data")


def model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    name = cfg.pipeline.optimizer
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)


def warm_up_process(cfg: TrainConfig) -> None:
    """What a process's first client would pay once, paid now, at the worker's start.

    Left to the first client, it would sit in the first round's time and, with ``--warmup
    0``, make every process mode look slower than serial (whose process paid it in the probe
    step): torch 2.x imports ``torch._dynamo`` when the first optimizer is made (about 1.7 s
    of a core on CPU slots), and a loader whose workers fork from a forkserver starts that
    server (a process importing torch) on its first epoch."""
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    start_loader_server(cfg.pipeline)


class ClientError(RuntimeError):
    """A client's training raised; the message names the client and the device."""


class ClientTrainer:
    """A model replica on one device plus the datasets of the clients it may train.

    ``--client-setup fresh`` builds the model, optimizer and loader again each time a client
    trains (as a Flower ``client_fn`` does); ``reuse`` keeps one model per trainer and one
    source (loader) per client.
    """

    def __init__(
        self,
        case: Case,
        cfg: TrainConfig,
        torch_device: str,
        device_id: str,
        worker: int,
        datasets: Mapping[int, tuple[torch.Tensor, torch.Tensor]],
    ) -> None:
        self.case = case
        self.cfg = cfg
        self.pipeline = cfg.pipeline
        self.torch_device = torch_device
        self.device_id = device_id
        self.worker = worker
        self.datasets = datasets
        check_pipeline(cfg.pipeline, case.input_shape, torch_device.startswith("cuda"))
        set_torch_threads(cfg.pipeline.torch_threads)
        self.model = case.build_model().to(torch_device)
        self.tensors = state_tensors(self.model)
        self.loss_fn = case.loss_fn()
        self.sink = UpdateSink(sum(t.numel() for t in self.tensors), cfg.seed, torch_device)
        # What "wait for this trainer's queued kernels" means; the streams mode narrows it
        # to the trainer's own CUDA stream.
        self.synchronize: Callable[[], None] = lambda: synchronize(torch_device)
        # A client waits for its device once at its start and once at its end; within, the
        # copy and compute phases are split by CUDA events read at the end. ``step_sync``
        # waits at every phase boundary of a step instead (a barrier user code does not have,
        # and every thread of the threaded mode would wait for every other's kernels).
        self.events = event_recorder(torch_device)
        self.step_sync = False
        self.sources: dict[int, ClientSource] = {}
        self._host: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _client_data(
        self, client: int, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``--data host``: the client's tensors in host memory (pinned with --pin-memory)."""
        if self.pipeline.data != "host" or x.device.type == "cpu":
            return x, y
        if client in self._host:
            return self._host[client]
        xs, ys = x.cpu(), y.cpu()
        if self.pipeline.pin_memory:
            xs, ys = xs.pin_memory(), ys.pin_memory()
        if self._keeps(client):
            self._host[client] = (xs, ys)
        return xs, ys

    def _keeps(self, client: int) -> bool:
        """Whether what is built on ``client``'s data may be kept: while its data is."""
        keeps = getattr(self.datasets, "keeps", None)
        return keeps is None or bool(keeps(client))

    def _source(self, client: int, x: torch.Tensor, y: torch.Tensor) -> ClientSource:
        fresh = self.pipeline.client_setup == "fresh"
        if not fresh and client in self.sources:
            return self.sources[client]
        x, y = self._client_data(client, x, y)
        cifar = None
        if self.pipeline.cifar_root is not None:
            images, labels = load_cifar(self.pipeline.cifar_root)
            cifar = images[cifar_pick(labels, y, self.cfg.seed, client)]
        source = ClientSource(self.cfg, client, x, y, self.torch_device, cifar)
        if not fresh and self._keeps(client):  # a source holds its client's data
            self.sources[client] = source
        return source

    def run(self, client: int, fingerprints: torch.Tensor, fold: bool = True) -> ClientTiming:
        """Train one client from the round's global model (``self.sink.begin`` first), write
        its fingerprint into ``fingerprints[client]`` and fold its update into the sink.

        Times are absolute ``perf_counter`` values for start/end (one monotonic clock is
        shared by all processes); on CUDA every timestamp follows a synchronise. The client's
        phases add up to ``end_s - start_s``.
        """
        self.synchronize()
        clock = PhaseClock(self.synchronize, None if self.step_sync else self.events)
        waited = start_waiting()
        # Made here when the worker does not keep it (--data-budget): part of "data".
        x, y = self.datasets[client]
        samples = int(x.shape[0])
        clock.tick("data", synced=True)
        fresh = self.pipeline.client_setup == "fresh"
        source = None
        with client_rngs(self.torch_device):
            try:
                if fresh:
                    self.model = self.case.build_model().to(self.torch_device)
                    self.tensors = state_tensors(self.model)
                load_state(self.tensors, self.sink.global_state)
                opt = make_optimizer(self.model, self.cfg)
                source = self._source(client, x, y)
                t1 = clock.tick("setup", synced=True)
                train_epochs(self.model, opt, source, self.cfg, client, self.loss_fn, clock,
                             self.torch_device, self.step_sync)
            except Exception as exc:
                raise ClientError(
                    f"client {client} on {self.device_id} raised {type(exc).__name__}: {exc}"
                    f"{loader_hint(exc)}"
                ) from exc
            finally:
                if fresh and source is not None:
                    source.close()
        t2 = clock.tick("compute", synced=True)
        flatten_state(self.tensors, self.sink.state_view())
        fingerprints[client] = self.sink.take()
        clock.tick("write", synced=True)
        if fold:
            self.sink.fold(float(samples))
        t4 = clock.tick("aggregate", synced=True)
        t0 = clock.start
        return ClientTiming(
            client=client,
            device=self.device_id,
            worker=self.worker,
            samples=samples,
            load_s=t1 - t0,
            train_s=t2 - t1,
            write_s=t4 - t2,
            start_s=t0,
            end_s=t4,
            phases=dict(clock.phases),
            wait_s=waited(),
        )

    def close(self) -> None:
        for source in self.sources.values():
            source.close()
        self.sources.clear()


class Trainer(Protocol):
    """What every mode trains clients with: :class:`ClientTrainer`, or a case's own."""

    torch_device: str
    device_id: str
    worker: int
    sink: UpdateSink
    synchronize: Callable[[], None]

    def run(self, client: int, fingerprints: torch.Tensor, fold: bool = True) -> ClientTiming:
        """Train ``client`` from ``self.sink.global_state``; its fingerprint into
        ``fingerprints[client]``; its update folded into the sink (unless ``fold`` is False)."""
        ...


def make_trainer(
    case: Case,
    cfg: TrainConfig,
    torch_device: str,
    device_id: str,
    worker: int,
    datasets: Mapping[int, tuple[torch.Tensor, torch.Tensor]],
) -> Trainer:
    """The trainer a worker uses for ``case``: the case's own if it brings one."""
    set_torch_threads(cfg.pipeline.torch_threads)
    warm_up_process(cfg)
    factory = case.make_trainer or ClientTrainer
    trainer: Trainer = factory(case, cfg, torch_device, device_id, worker, datasets)
    return trainer


def build_datasets(
    case: Case,
    cfg: TrainConfig,
    clients: Sequence[int],
    sizes: Sequence[int],
    torch_device: str,
    peers: int = 1,
) -> ClientData:
    """The clients' data on ``torch_device``, each made when it first trains and kept
    within ``cfg.data_budget`` (``peers``: the processes sharing the device)."""
    return ClientData(case, cfg, clients, sizes, torch_device, cfg.data_budget, peers=peers)


def sizes_for(cfg: TrainConfig, clients: int) -> list[int]:
    return client_sizes(cfg.samples, cfg.seed, clients)
