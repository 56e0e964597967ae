"""One client's local training.

Every mode trains clients through :class:`ClientTrainer` (or, for vectorized, the same
arithmetic batched) and hands each client's update to a :class:`gpubench.updates.UpdateSink`,
so the only thing that differs between modes is *where* and *when* a client trains. A model's
whole state (parameters and buffers) travels as one flat float32 vector.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from gpubench.cases import Case, client_sizes
from gpubench.clientdata import ClientData
from gpubench.config import TrainConfig
from gpubench.cuda import synchronize
from gpubench.results import ClientTiming
from gpubench.seeds import derive_seed
from gpubench.updates import UpdateSink


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
    """SGD with momentum over the client's data; shuffling from the client's own generator,
    every other draw from the global RNGs seeded per (seed, client, epoch)."""
    model.train()
    if opt is None:
        opt = make_optimizer(model, cfg)
    n = int(x.shape[0])
    for epoch in range(cfg.local_epochs):
        seed_client_rngs(cfg.seed, client, epoch)
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "shuffle", client, epoch))
        order = torch.randperm(n, generator=gen).to(x.device)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)


class ClientError(RuntimeError):
    """A client's training raised; the message names the client and the device."""


class ClientTrainer:
    """A model replica on one device plus the datasets of the clients it may train."""

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
        self.torch_device = torch_device
        self.device_id = device_id
        self.worker = worker
        self.datasets = datasets
        self.model = case.build_model().to(torch_device)
        self.tensors = state_tensors(self.model)
        self.loss_fn = case.loss_fn()
        self.sink = UpdateSink(sum(t.numel() for t in self.tensors), cfg.seed, torch_device)
        # What "wait for this trainer's queued kernels" means; the streams mode narrows it
        # to the trainer's own CUDA stream.
        self.synchronize: Callable[[], None] = lambda: synchronize(torch_device)

    def run(self, client: int, fingerprints: torch.Tensor, fold: bool = True) -> ClientTiming:
        """Train one client from the round's global model (``self.sink.begin`` first), write
        its fingerprint into ``fingerprints[client]`` and fold its update into the sink.

        Times are absolute ``perf_counter`` values for start/end (one monotonic clock is
        shared by all processes); on CUDA every timestamp follows a synchronise.
        """
        self.synchronize()
        t0 = time.perf_counter()
        x, y = self.datasets[client]  # made here when not kept: the "data" phase
        samples = int(x.shape[0])
        self.synchronize()
        td = time.perf_counter()
        with client_rngs(self.torch_device):
            load_state(self.tensors, self.sink.global_state)
            opt = make_optimizer(self.model, self.cfg)
            self.synchronize()
            t1 = time.perf_counter()
            try:
                local_train(self.model, x, y, self.cfg, client, self.loss_fn, opt)
            except Exception as exc:
                raise ClientError(
                    f"client {client} on {self.device_id} raised {type(exc).__name__}: {exc}"
                ) from exc
        self.synchronize()
        t2 = time.perf_counter()
        flatten_state(self.tensors, self.sink.state_view())
        fingerprints[client] = self.sink.take()
        self.synchronize()
        t3 = time.perf_counter()
        if fold:
            self.sink.fold(float(samples))
        self.synchronize()
        t4 = time.perf_counter()
        phases = {
            "data": td - t0, "setup": t1 - td, "compute": t2 - t1, "write": t3 - t2,
            "aggregate": t4 - t3,
        }
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
            phases=phases,
        )


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
