"""``vectorized``: all clients of a device trained at once, as one batched computation.

The clients' models are stacked (one leading "client" dimension on every parameter) and a
step of every client is one ``vmap`` of the loss over that dimension, with
``torch.func.functional_call`` running the case's own module, and one backward pass. SGD with momentum runs on the
stacked tensors with exactly ``torch.optim.SGD``'s update (``buf = g`` on the first step, then
``buf = momentum * buf + g``; ``p -= lr * buf``), and each client draws its batches from its
own shuffle order (the same generator as :func:`gpubench.fl.local_train`), so every client
follows the same trajectory as in ``serial``, up to summation order.

Clients with different sample counts: all clients must have the same batch shape inside one
vmap call, so each step *groups* the clients that are still training by the size of their
current batch (usually one group: every client's full batch; a client's short last batch
forms its own small group). Clients are independent, so the order of the groups within a
step does not matter. A client that has run all of its steps simply leaves the groups; this
keeps the loss of a short batch the mean over *its* samples, as in serial (masking a padded
batch would need every case's loss to accept per-sample weights).

One worker process per device (the persistent pool), holding all of that device's clients.

Tolerance: the batched kernels (bmm over clients) sum each gradient in another order than
one client's own matmuls, so the result is not bitwise serial's. The difference stays far
inside the harness's default tolerance on CPU slots (1e-5): measured 1e-8 to 3e-8 max abs
after a round (mlp and cnn, 1-2 epochs, even and uneven clients), the size of a few float32
rounding steps. On CUDA, convolutions in TF32 make the kernel choice visible (up to 9.4e-4
measured), so the mode asks for 4x the CUDA default there (``cuda_tolerance_scale``).

Per-client timings: every client of a worker spans the whole batched window (``start_s`` to
``end_s``), and its ``load_s``/``train_s``/``write_s`` are its share of the window's phases,
in proportion to its samples, so that the clients' times add up to the worker's busy time.

Not supported: layers that keep running statistics (BatchNorm): vmap cannot update an
unbatched buffer from batched values, and a batched one would not be what serial computes.
The mode fails at start with the layer's name. Buffers of other kinds are passed unbatched
and written back unchanged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from gpubench.cases import derive_seed, load_case
from gpubench.devices import synchronize
from gpubench.modes.base import ModeFailure
from gpubench.modes.pool import WorkerSetup, WorkerSpec
from gpubench.modes.processes import ProcessModeBase, plan_workers
from gpubench.results import ClientTiming


def check_vectorizable(model: nn.Module) -> None:
    """Raise :class:`ModeFailure` naming the first layer that vmap over clients cannot train."""
    for name, module in model.named_modules():
        if isinstance(module, _NormBase) and module.track_running_stats:
            raise ModeFailure(
                f"vectorized: layer {name!r} ({type(module).__name__}) keeps running "
                "statistics, which vmap over clients cannot train; use --case with GroupNorm "
                "(or track_running_stats=False) instead of BatchNorm"
            )


# --- the step plan ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StepGroup:
    """Clients (positions in the worker's client list) that take a batch of ``size`` now."""

    rows: tuple[int, ...]
    epochs: tuple[int, ...]  # which epoch's shuffle order each row is in
    starts: tuple[int, ...]  # where each row's batch starts in that order
    size: int


def plan_steps(sizes: Sequence[int], batch_size: int, epochs: int) -> list[list[StepGroup]]:
    """For each step, the groups of clients that train in it, largest batch first.

    Client ``r`` runs ``epochs * ceil(n_r / batch_size)`` steps, exactly the batches
    :func:`gpubench.fl.local_train` gives it; step ``t`` is its batch ``t % k`` of epoch
    ``t // k`` (``k`` its batches per epoch).
    """
    per_epoch = [max(1, math.ceil(n / batch_size)) for n in sizes]
    total = max((k * epochs for k in per_epoch), default=0)
    plan = []
    for t in range(total):
        groups: dict[int, list[tuple[int, int, int]]] = {}
        for r, (n, k) in enumerate(zip(sizes, per_epoch, strict=True)):
            if t >= k * epochs:
                continue
            epoch, batch = divmod(t, k)
            start = batch * batch_size
            groups.setdefault(min(batch_size, n - start), []).append((r, epoch, start))
        plan.append(
            [
                StepGroup(
                    tuple(m[0] for m in members),
                    tuple(m[1] for m in members),
                    tuple(m[2] for m in members),
                    size,
                )
                for size, members in sorted(groups.items(), reverse=True)
            ]
        )
    return plan


@dataclass(frozen=True)
class _Slot:
    """One state_dict entry's place in the flat state vector."""

    offset: int
    shape: torch.Size
    param: str | None  # canonical parameter name (tied weights share one), None: a buffer
    buffer: str | None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _layout(model: nn.Module) -> list[_Slot]:
    """The flat layout of :func:`gpubench.fl.flatten_state` (state_dict order)."""
    params = {id(p): n for n, p in model.named_parameters()}
    buffers = {id(b): n for n, b in model.named_buffers()}
    slots, at = [], 0
    for t in model.state_dict(keep_vars=True).values():
        slots.append(_Slot(at, t.shape, params.get(id(t)), buffers.get(id(t))))
        at += t.numel()
    return slots


# --- the worker body ------------------------------------------------------------------------


@dataclass
class _Group:
    """A :class:`StepGroup` as index tensors on the device."""

    rows: torch.Tensor
    epochs: torch.Tensor
    positions: torch.Tensor  # (rows x size) positions in each row's shuffle order
    all_rows: bool  # every client of the worker, in order: no gather/scatter needed


class VectorizedBody:
    """A worker's clients as one stacked model; ``run_round`` trains them all at once."""

    def __init__(self, setup: WorkerSetup, spec: WorkerSpec, torch_device: str) -> None:
        from torch.func import functional_call, vmap

        from gpubench.fl import build_datasets

        case = load_case(setup.case)
        self.cfg = setup.train
        self.model = case.build_model().to(torch_device)
        check_vectorizable(self.model)
        self.model.train()
        self.loss_fn = case.loss_fn()
        self.torch_device = torch_device
        self.device_id = spec.device.id
        self.worker = spec.worker
        self.clients = spec.clients
        data = build_datasets(case, setup.train, spec.clients, setup.sizes, torch_device)
        self.sizes = [int(data[c][0].shape[0]) for c in spec.clients]
        # All clients' samples in one tensor; a client's shuffle order is offset into it.
        self.x = torch.cat([data[c][0] for c in spec.clients])
        self.y = torch.cat([data[c][1] for c in spec.clients])
        self.offsets = torch.tensor([0, *self.sizes[:-1]]).cumsum(0)
        self.slots = _layout(self.model)
        self.param_slots: dict[str, _Slot] = {}
        for slot in self.slots:
            if slot.param is not None:
                self.param_slots.setdefault(slot.param, slot)
        self.buffer_tensors = dict(self.model.named_buffers())
        self.client_index = torch.tensor(spec.clients)
        n = len(spec.clients)
        self.steps = [
            [
                _Group(
                    torch.tensor(g.rows, device=torch_device),
                    torch.tensor(g.epochs, device=torch_device),
                    (torch.tensor(g.starts)[:, None] + torch.arange(g.size)).to(torch_device),
                    g.rows == tuple(range(n)),
                )
                for g in groups
            ]
            for groups in plan_steps(self.sizes, self.cfg.batch_size, self.cfg.local_epochs)
        ]

        model, loss_fn = self.model, self.loss_fn

        def loss(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> Any:
            return loss_fn(functional_call(model, params, (x,)), y)

        # randomness="different": dropout draws its own mask for every client.
        self.losses = vmap(loss, in_dims=(0, 0, 0), randomness="different")

    def _grads(
        self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Every client's gradient of its own loss, for the stacked parameters.

        The clients' losses are independent, so the gradient of their sum with respect to
        client c's parameters is client c's gradient; one autograd pass over the vmapped
        forward is faster than ``vmap(grad(loss))`` (about 10% here) and gives the same
        numbers up to summation order.
        """
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        grads = torch.autograd.grad(self.losses(leaves, x, y).sum(), list(leaves.values()))
        return dict(zip(leaves, grads, strict=True))

    def _orders(self) -> torch.Tensor:
        """(clients x epochs x max samples) shuffle orders, offset into ``self.x``."""
        cfg = self.cfg
        orders = torch.zeros(len(self.clients), cfg.local_epochs, max(self.sizes), dtype=torch.long)
        for r, (client, n) in enumerate(zip(self.clients, self.sizes, strict=True)):
            for epoch in range(cfg.local_epochs):
                gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "shuffle", client, epoch))
                orders[r, epoch, :n] = torch.randperm(n, generator=gen)
        orders += self.offsets[:, None, None]
        return orders.to(self.torch_device)

    def _load(self, global_state: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = global_state.to(self.torch_device)
        n = len(self.clients)
        params = {}
        for name, slot in self.param_slots.items():
            one = flat[slot.offset : slot.offset + slot.numel].view(slot.shape)
            params[name] = one.unsqueeze(0).repeat(n, *([1] * one.dim()))
        with torch.no_grad():
            for slot in self.slots:
                if slot.buffer is not None:
                    buf = self.buffer_tensors[slot.buffer]
                    buf.copy_(flat[slot.offset : slot.offset + slot.numel].view_as(buf))
        return params

    @torch.no_grad()
    def _sgd(
        self,
        params: dict[str, torch.Tensor],
        momenta: dict[str, torch.Tensor],
        grads: dict[str, torch.Tensor],
        group: _Group,
        first: bool,
    ) -> None:
        """torch.optim.SGD(lr, momentum) on the group's rows of the stacked tensors."""
        lr, momentum = self.cfg.lr, self.cfg.momentum
        for name, g in grads.items():
            if group.all_rows:
                p = params[name]
                if momentum == 0:
                    p.add_(g, alpha=-lr)
                    continue
                if first:
                    momenta[name] = g.clone()
                else:
                    momenta[name].mul_(momentum).add_(g)
                p.add_(momenta[name], alpha=-lr)
                continue
            p = params[name][group.rows]
            if momentum == 0:
                p.add_(g, alpha=-lr)
            else:
                if name not in momenta:
                    momenta[name] = torch.empty_like(params[name])
                if first:
                    buf = g.clone()
                else:
                    buf = momenta[name][group.rows].mul_(momentum).add_(g)
                momenta[name].index_copy_(0, group.rows, buf)
                p.add_(buf, alpha=-lr)
            params[name].index_copy_(0, group.rows, p)

    def _train(self, params: dict[str, torch.Tensor]) -> None:
        momenta: dict[str, torch.Tensor] = {}
        orders = self._orders()
        for t, groups in enumerate(self.steps):
            for group in groups:
                idx = orders[group.rows[:, None], group.epochs[:, None], group.positions]
                mine = params if group.all_rows else {k: v[group.rows] for k, v in params.items()}
                grads = self._grads(mine, self.x[idx], self.y[idx])
                self._sgd(params, momenta, grads, group, t == 0)

    def _write(self, params: dict[str, torch.Tensor], updates: torch.Tensor) -> None:
        n = len(self.clients)
        parts = []
        for slot in self.slots:
            if slot.param is not None:
                parts.append(params[slot.param].reshape(n, -1))
            else:
                assert slot.buffer is not None
                parts.append(self.buffer_tensors[slot.buffer].reshape(1, -1).expand(n, -1))
        stacked = torch.cat([p.to(torch.float32) for p in parts], dim=1).cpu()
        updates.index_copy_(0, self.client_index, stacked)

    def run_round(self, global_state: torch.Tensor, updates: torch.Tensor) -> list[ClientTiming]:
        dev = self.torch_device
        synchronize(dev)
        t0 = time.perf_counter()
        params = self._load(global_state)
        synchronize(dev)
        t1 = time.perf_counter()
        try:
            self._train(params)
        except Exception as exc:
            raise ModeFailure(
                f"vectorized: clients {list(self.clients)} on {self.device_id} raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        synchronize(dev)
        t2 = time.perf_counter()
        self._write(params, updates)
        synchronize(dev)
        t3 = time.perf_counter()
        total = float(sum(self.sizes))
        return [
            ClientTiming(
                client=client,
                device=self.device_id,
                worker=self.worker,
                samples=n,
                load_s=(t1 - t0) * n / total,
                train_s=(t2 - t1) * n / total,
                write_s=(t3 - t2) * n / total,
                start_s=t0,
                end_s=t3,
            )
            for client, n in zip(self.clients, self.sizes, strict=True)
        ]


def make_vectorized_body(setup: WorkerSetup, spec: WorkerSpec, torch_device: str) -> VectorizedBody:
    return VectorizedBody(setup, spec, torch_device)


class VectorizedMode(ProcessModeBase):
    name = "vectorized"
    trainer = "gpubench.modes.vectorized:make_vectorized_body"
    # On CUDA the batched convolutions run other (TF32) kernels than serial's: measured on an
    # H200, cnn differed by 1.0e-4 at batch 128 and 9.4e-4 at batch 32, so 4x the default.
    cuda_tolerance_scale = 4.0
    supports_dynamic = False  # a device's clients are one batched computation

    def make_specs(self) -> list[WorkerSpec]:
        return plan_workers(self.plan, self.plan.devices, 1)

    def start(self) -> None:
        # Refuse a BatchNorm model here, with the layer's name, before any worker starts.
        check_vectorizable(load_case(self.plan.config.case).build_model())
        super().start()
