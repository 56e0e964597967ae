"""One client's local training, and FedAvg.

Every mode runs clients through :class:`ClientTrainer` and aggregates with :func:`fedavg`, so
the only thing that differs between modes is *where* and *when* a client trains. A model's
whole state (parameters and buffers) travels as one flat float32 vector; a round's client
results are the rows of one (clients x state) matrix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from gpubench.cases import Case, client_sizes
from gpubench.config import TrainConfig
from gpubench.cuda import synchronize
from gpubench.results import ClientTiming
from gpubench.seeds import derive_seed


def state_tensors(model: nn.Module) -> list[torch.Tensor]:
    """The model's state (parameters, then buffers, in state_dict order), sharing storage."""
    return list(model.state_dict(keep_vars=False).values())


def state_size(model: nn.Module) -> int:
    return sum(t.numel() for t in state_tensors(model))


def flatten_state(tensors: Sequence[torch.Tensor], out: torch.Tensor | None = None) -> torch.Tensor:
    flat = torch.cat([t.detach().reshape(-1).to(torch.float32) for t in tensors])
    if out is None:
        return flat.cpu()
    out.copy_(flat)
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


def fedavg(states: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """Weighted mean of the rows of ``states`` (clients x state).

    Accumulated row by row in float64 with elementwise operations, so the result does not
    depend on thread count or on which mode produced the rows.
    """
    if states.shape[0] != len(weights) or not weights:
        raise ValueError("one weight per client row is needed")
    total = float(sum(weights))
    acc = torch.zeros(states.shape[1], dtype=torch.float64)
    for row, w in zip(states, weights, strict=True):
        acc.add_(row.to(torch.float64), alpha=w / total)
    return acc.to(torch.float32)


def initial_global_state(case: Case, seed: int) -> torch.Tensor:
    """The round's global model, built once in the parent from the seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        model = case.build_model()
    return flatten_state(state_tensors(model))


def local_train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    client: int,
    loss_fn: Callable[[Any, Any], Any],
) -> None:
    """SGD with momentum over the client's data; shuffling from the client's own generator."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    n = int(x.shape[0])
    for epoch in range(cfg.local_epochs):
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "shuffle", client, epoch))
        order = torch.randperm(n, generator=gen).to(x.device)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()


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
        datasets: dict[int, tuple[torch.Tensor, torch.Tensor]],
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
        # What "wait for this trainer's queued kernels" means; the streams mode narrows it
        # to the trainer's own CUDA stream.
        self.synchronize: Callable[[], None] = lambda: synchronize(torch_device)

    def run(self, client: int, global_state: torch.Tensor, out_row: torch.Tensor) -> ClientTiming:
        """Train one client from ``global_state`` and write its state into ``out_row``.

        Times are absolute ``perf_counter`` values for start/end (one monotonic clock is
        shared by all processes); on CUDA every timestamp follows a synchronise.
        """
        x, y = self.datasets[client]
        self.synchronize()
        t0 = time.perf_counter()
        load_state(self.tensors, global_state)
        self.synchronize()
        t1 = time.perf_counter()
        try:
            local_train(self.model, x, y, self.cfg, client, self.loss_fn)
        except Exception as exc:
            raise ClientError(
                f"client {client} on {self.device_id} raised {type(exc).__name__}: {exc}"
            ) from exc
        self.synchronize()
        t2 = time.perf_counter()
        flatten_state(self.tensors, out_row)
        self.synchronize()
        t3 = time.perf_counter()
        return ClientTiming(
            client=client,
            device=self.device_id,
            worker=self.worker,
            samples=int(x.shape[0]),
            load_s=t1 - t0,
            train_s=t2 - t1,
            write_s=t3 - t2,
            start_s=t0,
            end_s=t3,
        )


def build_datasets(
    case: Case,
    cfg: TrainConfig,
    clients: Sequence[int],
    sizes: Sequence[int],
    torch_device: str,
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    out = {}
    for c in clients:
        x, y = case.data(cfg.seed, c, sizes[c], cfg.partition)
        out[c] = (x.to(torch_device), y.to(torch_device))
    return out


def sizes_for(cfg: TrainConfig, clients: int) -> list[int]:
    return client_sizes(cfg.samples, cfg.seed, clients)
