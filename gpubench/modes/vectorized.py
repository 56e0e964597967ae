"""``vectorized``: all clients of a device trained at once, as one batched computation.

The clients' models are stacked (one leading "client" dimension on every parameter) and a
step of every client is one ``vmap`` over that dimension, with ``torch.func.functional_call``
running the case's own module, and one backward pass. SGD with momentum runs on the stacked
tensors through ``torch.optim.sgd.sgd``, the function ``torch.optim.SGD`` itself steps with,
and each client draws its batches from its own shuffle order (the same generator as
:func:`gpubench.fl.local_train`), so every client follows the same trajectory as in
``serial``, up to summation order.

An ``nn.Sequential`` runs layer by layer instead (:class:`StackedSequential`): its linear
layers as one ``baddbmm`` over the clients, elementwise layers on the stacked tensors, any
other layer vmapped on its own; other models are vmapped whole.

What makes it fast, besides one kernel for all clients where serial launches one per client:
the default loss (cross entropy on class indices) runs once over the whole group instead of
per-sample vmapped kernels; a batch is gathered with ``index_select`` (a row copy); and each
stacked parameter is laid out in memory as its gradient comes out of the batched backward
(a linear layer's weight gradient is transposed), so the optimizer's elementwise updates
stream through memory.

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
after a round on mlp (1-2 epochs, even and uneven clients), the size of a few float32
rounding steps, and 4.5e-7 on cnn (10 clients, batch 128), whose vmapped convolutions run
as grouped ones. On CUDA, convolutions in TF32 make the kernel choice visible (up to 9.4e-4
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

from gpubench.cases import load_case
from gpubench.cuda import synchronize
from gpubench.modes.base import ModeFailure
from gpubench.modes.pool import WorkerSetup, WorkerSpec
from gpubench.modes.processes import ProcessModeBase, plan_workers
from gpubench.results import ClientTiming
from gpubench.seeds import derive_seed


def check_vectorizable(model: nn.Module) -> None:
    """Raise :class:`ModeFailure` naming the first layer that vmap over clients cannot train."""
    for name, module in model.named_modules():
        if isinstance(module, _NormBase) and module.track_running_stats:
            raise ModeFailure(
                f"vectorized: layer {name!r} ({type(module).__name__}) keeps running "
                "statistics, which vmap over clients cannot train; use --case with GroupNorm "
                "(or track_running_stats=False) instead of BatchNorm"
            )


# --- a Sequential, layer by layer -------------------------------------------------------------

# Parameter-free layers that act elementwise: they run on the stacked tensors as they are
# (dropout then draws an independent mask per element, so per client).
ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid,
    nn.Hardtanh, nn.Softplus, nn.Dropout, nn.Identity,
)


def _kind(layer: nn.Module) -> str:
    """How :class:`StackedSequential` runs a layer. Exact types only: a subclass may have a
    forward of its own."""
    if type(layer) is nn.Linear:
        return "linear"
    if type(layer) is nn.Flatten:
        return "flatten"
    if type(layer) in ELEMENTWISE:
        return "elementwise"
    return "other"


class StackedSequential:
    """An ``nn.Sequential`` run on stacked clients one layer at a time.

    ``nn.Linear`` runs as one ``baddbmm`` over the clients (bias fused); elementwise layers
    run on the stacked tensors directly; ``nn.Flatten`` becomes a flatten one dimension
    further right; any other layer is vmapped on its own, with its own parameters. Measured
    on mlp (10 clients, batch 64, one CPU slot): a step's forward and backward 1.70 ms,
    against 2.11 ms for the vmapped whole model, whose linear layers decompose into more
    operations (a matmul, a scaled bias, an add, each with its backward).
    """

    def __init__(self, layers: list[tuple[str, nn.Module]]) -> None:
        from torch.func import functional_call, vmap

        self.layers = layers
        self.kinds = [_kind(layer) for _, layer in layers]
        # Other layers: their vmapped call and their own parameters' names.
        self.vmapped: dict[str, Any] = {}
        self.own: dict[str, list[str]] = {}
        for (prefix, layer), kind in zip(layers, self.kinds, strict=True):
            if kind == "other":

                def call(p: dict[str, torch.Tensor], h: torch.Tensor, m: nn.Module = layer) -> Any:
                    return functional_call(m, p, (h,))

                self.vmapped[prefix] = vmap(call, randomness="different")
                self.own[prefix] = [name for name, _ in layer.named_parameters()]

    @classmethod
    def of(cls, model: nn.Module) -> StackedSequential | None:
        """For an ``nn.Sequential`` (nested ones unrolled) with at least one Linear layer and
        no tied parameters; else None (the whole model is then vmapped)."""
        if not isinstance(model, nn.Sequential):
            return None
        every = list(model.named_parameters(remove_duplicate=False))
        if len({id(p) for _, p in every}) != len(every):
            return None
        layers: list[tuple[str, nn.Module]] = []

        def unroll(seq: nn.Sequential, prefix: str) -> None:
            for name, child in seq.named_children():
                if isinstance(child, nn.Sequential):
                    unroll(child, f"{prefix}{name}.")
                else:
                    layers.append((f"{prefix}{name}.", child))

        unroll(model, "")
        if not any(_kind(m) == "linear" for _, m in layers):
            return None
        return cls(layers)

    def __call__(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> Any:
        h: Any = x
        for (prefix, layer), kind in zip(self.layers, self.kinds, strict=True):
            if kind == "linear":
                weight = params[prefix + "weight"]
                bias = params.get(prefix + "bias")
                flat = h.reshape(h.shape[0], -1, h.shape[-1])  # (clients, rows, features)
                out = (
                    torch.bmm(flat, weight.transpose(1, 2))
                    if bias is None
                    else torch.baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2))
                )
                h = out.view(*h.shape[:-1], out.shape[-1])
            elif kind == "flatten":
                assert isinstance(layer, nn.Flatten)
                end = layer.end_dim + 1 if layer.end_dim >= 0 else layer.end_dim
                start = layer.start_dim + 1 if layer.start_dim >= 0 else layer.start_dim
                h = h.flatten(start, end)
            elif kind == "elementwise":
                h = layer(h)
            else:
                own = {name: params[prefix + name] for name in self.own[prefix]}
                h = self.vmapped[prefix](own, h)
        return h


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
        # Row views for index_select, a plain row copy (much faster than advanced indexing).
        self.x_rows = self.x.reshape(self.x.shape[0], -1)
        self.y_rows = self.y.reshape(self.y.shape[0], -1)
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

        def forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> Any:
            return functional_call(model, params, (x,))

        # randomness="different": dropout draws its own mask for every client.
        self.stacked = StackedSequential.of(model)
        self.forward: Any = self.stacked or vmap(forward, randomness="different")
        self.losses = vmap(loss_fn, randomness="different")
        # The default loss (cross entropy) is computed for the whole group at once.
        self.plain_cross_entropy = case.loss is None
        # Each parameter's memory layout, taken from its gradient (see _adopt_layouts).
        self.layouts: dict[str, tuple[int, ...]] = {}
        self._adopt_layouts()

    def _grads(
        self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Every client's gradient of its own loss, for the stacked parameters.

        The clients' losses are independent, so the gradient of their sum with respect to
        client c's parameters is client c's gradient; one autograd pass over the vmapped
        forward is faster than ``vmap(grad(loss))`` and gives the same numbers up to
        summation order.
        """
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        total = self._loss_sum(self.forward(leaves, x), y)
        grads = torch.autograd.grad(total, list(leaves.values()))
        return dict(zip(leaves, grads, strict=True))

    def _loss_sum(self, out: Any, y: torch.Tensor) -> torch.Tensor:
        """The sum over clients of each client's loss on its batch.

        For the default loss and class-index targets, cross entropy runs once over all the
        group's samples and each client's mean is taken from its rows (skipping targets equal
        to ``ignore_index``, as ``cross_entropy``'s mean does); the vmapped loss would run
        per-sample kernels. Any other loss is vmapped.
        """
        if (
            self.plain_cross_entropy
            and isinstance(out, torch.Tensor)
            and out.dim() == 3
            and y.dim() == 2
            and not torch.is_floating_point(y)
        ):
            from torch.nn import functional

            each = functional.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none")
            counted = (y != -100).sum(dim=1)
            return (each.view_as(y).sum(dim=1) / counted).sum()
        return self.losses(out, y).sum()

    def _adopt_layouts(self) -> None:
        """Lay each stacked parameter out in memory the way its gradient comes out.

        The batched backward of a linear layer gives the weight's gradient transposed in
        memory. With the parameters, momenta and gradients in one layout, SGD's elementwise
        updates stream through memory instead of striding across it: measured 14% off a
        round (mlp, 10 clients, batch 64, one CPU slot). The layout is read from one probe
        step (a few samples of every client, the model's initial weights) at start-up.
        """
        if not self.clients:
            return
        size = min(min(self.sizes), self.cfg.batch_size)
        rows = (self.offsets[:, None] + torch.arange(size)).to(self.torch_device)
        n = len(self.clients)
        stacked = {
            k: v.detach().unsqueeze(0).expand(n, *v.shape).contiguous()
            for k, v in self.model.named_parameters()
        }
        cuda = [torch.device(self.torch_device).index or 0] if self.torch_device != "cpu" else []
        with torch.random.fork_rng(devices=cuda):  # the probe leaves dropout's stream alone
            grads = self._grads(stacked, *self._batch(rows))
        self.layouts = {k: tuple(g.stride()) for k, g in grads.items()}

    def _stacked(self, name: str, one: torch.Tensor) -> torch.Tensor:
        """``one`` repeated for every client, in the layout its gradients will have."""
        n = len(self.clients)
        shape = (n, *one.shape)
        strides = self.layouts.get(name)
        if strides is None:
            return one.unsqueeze(0).repeat(n, *([1] * one.dim()))
        # Dimensions from the largest stride to the smallest: a dense tensor in that order.
        order = sorted(range(len(shape)), key=lambda d: (-strides[d], d))
        dense = torch.empty([shape[d] for d in order], dtype=one.dtype, device=one.device)
        inverse = sorted(range(len(order)), key=lambda i: order[i])
        dense.copy_(one.expand(shape).permute(order))  # written in its own order: sequential
        return dense.permute(inverse)

    def _batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples at ``rows`` (clients x batch) of ``self.x`` and ``self.y``."""
        flat = rows.reshape(-1)
        x = torch.index_select(self.x_rows, 0, flat).view(*rows.shape, *self.x.shape[1:])
        y = torch.index_select(self.y_rows, 0, flat).view(*rows.shape, *self.y.shape[1:])
        return x, y

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
        params = {}
        for name, slot in self.param_slots.items():
            one = flat[slot.offset : slot.offset + slot.numel].view(slot.shape)
            params[name] = self._stacked(name, one)
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
        """The group's rows of the stacked tensors take one step of torch.optim.SGD(lr,
        momentum): its own functional update, ``torch.optim.sgd.sgd``."""
        from torch.optim.sgd import sgd

        names = list(grads)
        fresh = first or self.cfg.momentum == 0  # no momentum buffer to read
        if group.all_rows:
            ps = [params[k] for k in names]
            bufs: list[torch.Tensor | None] = [None if fresh else momenta[k] for k in names]
        else:
            ps = [params[k][group.rows] for k in names]
            bufs = [None if fresh else momenta[k][group.rows] for k in names]
        sgd(
            ps,
            [grads[k] for k in names],
            bufs,
            foreach=True,
            weight_decay=0.0,
            momentum=self.cfg.momentum,
            lr=self.cfg.lr,
            dampening=0.0,
            nesterov=False,
            maximize=False,
        )
        for k, p, buf in zip(names, ps, bufs, strict=True):
            if group.all_rows:
                if buf is not None:
                    momenta[k] = buf
                continue
            params[k].index_copy_(0, group.rows, p)
            if buf is not None:
                if k not in momenta:
                    momenta[k] = torch.empty_like(params[k])
                momenta[k].index_copy_(0, group.rows, buf)

    def _train(self, params: dict[str, torch.Tensor]) -> None:
        momenta: dict[str, torch.Tensor] = {}
        orders = self._orders()
        for t, groups in enumerate(self.steps):
            for group in groups:
                idx = orders[group.rows[:, None], group.epochs[:, None], group.positions]
                mine = params if group.all_rows else {k: v[group.rows] for k, v in params.items()}
                grads = self._grads(mine, *self._batch(idx))
                self._sgd(params, momenta, grads, group, t == 0)

    def _write(self, params: dict[str, torch.Tensor], updates: torch.Tensor) -> None:
        """Every client's state into its row of ``updates``."""
        n = len(self.clients)
        rows = self._rows(updates) if self.torch_device == "cpu" else None
        if rows is not None:  # straight into the rows: one copy per tensor
            for slot in self.slots:
                dest = rows[:, slot.offset : slot.offset + slot.numel].view(n, *slot.shape)
                if slot.param is not None:
                    dest.copy_(params[slot.param])
                else:
                    assert slot.buffer is not None
                    dest.copy_(self.buffer_tensors[slot.buffer].expand(n, *slot.shape))
            return
        parts = []
        for slot in self.slots:
            if slot.param is not None:
                parts.append(params[slot.param].reshape(n, -1))
            else:
                assert slot.buffer is not None
                parts.append(self.buffer_tensors[slot.buffer].reshape(1, -1).expand(n, -1))
        stacked = torch.cat([p.to(torch.float32) for p in parts], dim=1).cpu()
        updates.index_copy_(0, self.client_index, stacked)

    def _rows(self, updates: torch.Tensor) -> torch.Tensor | None:
        """This worker's rows of ``updates`` as one view, when its clients are evenly spaced
        (every client, or every k-th as round-robin assigns them); else None."""
        c = self.clients
        step = c[1] - c[0] if len(c) > 1 else 1
        if step < 1 or any(b - a != step for a, b in zip(c, c[1:], strict=False)):
            return None
        return updates[c[0] : c[-1] + 1 : step]

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
