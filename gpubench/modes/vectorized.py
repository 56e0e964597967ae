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

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gpubench.cases import load_case
from gpubench.cuda import synchronize
from gpubench.modes.base import ModeFailure
from gpubench.modes.pool import WorkerSetup, WorkerSpec
from gpubench.modes.processes import ProcessModeBase, plan_workers
from gpubench.modes.stacked import (
    StackedSequential,
    StateSlot,
    check_vectorizable,
    plan_steps,
    state_layout,
)
from gpubench.results import ClientTiming
from gpubench.seeds import derive_seed
from gpubench.updates import UpdateSink

# --- the worker body ------------------------------------------------------------------------


@dataclass
class _Group:
    """A :class:`StepGroup` as index tensors on the device."""

    rows: torch.Tensor
    epochs: torch.Tensor
    positions: torch.Tensor  # (rows x size) positions in each row's shuffle order
    all_rows: bool  # every client of the worker, in order: no gather/scatter needed
    row_list: tuple[int, ...] = ()  # the same rows and epochs on the host
    epoch_list: tuple[int, ...] = ()


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
        self.slots = state_layout(self.model)
        self.param_slots: dict[str, StateSlot] = {}
        for slot in self.slots:
            if slot.param is not None:
                self.param_slots.setdefault(slot.param, slot)
        self.buffer_tensors = dict(self.model.named_buffers())
        state_size = sum(slot.numel for slot in self.slots)
        self.sink = UpdateSink(state_size, self.cfg.seed, torch_device)
        n = len(spec.clients)
        self.steps = [
            [
                _Group(
                    torch.tensor(g.rows, device=torch_device),
                    torch.tensor(g.epochs, device=torch_device),
                    (torch.tensor(g.starts)[:, None] + torch.arange(g.size)).to(torch_device),
                    g.rows == tuple(range(n)),
                    g.rows,
                    g.epochs,
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
        # Serial seeds the global RNG per (seed, client, epoch); each client's generator here.
        gens = [torch.Generator(device=self.torch_device) for _ in self.clients]
        epoch_of = [-1] * len(self.clients)
        for t, groups in enumerate(self.steps):
            for group in groups:
                rows = group.row_list
                for r, epoch in zip(rows, group.epoch_list, strict=True):
                    if epoch_of[r] != epoch:
                        gens[r].manual_seed(derive_seed(self.cfg.seed, "rng", self.clients[r], epoch))
                        epoch_of[r] = epoch
                if self.stacked is not None:
                    self.stacked.generators = [gens[r] for r in rows]
                idx = orders[group.rows[:, None], group.epochs[:, None], group.positions]
                mine = params if group.all_rows else {k: v[group.rows] for k, v in params.items()}
                grads = self._grads(mine, *self._batch(idx))
                self._sgd(params, momenta, grads, group, t == 0)

    def begin(self, global_state: torch.Tensor, partial: torch.Tensor) -> None:
        self.sink.begin(global_state, partial)
        self.global_state = global_state

    def _write(self, params: dict[str, torch.Tensor], fingerprints: torch.Tensor) -> None:
        """Every client's state through the sink: fingerprint into its row, update folded."""
        row = self.sink.state_view()
        for r, (client, n) in enumerate(zip(self.clients, self.sizes, strict=True)):
            for slot in self.slots:
                dest = row[slot.offset : slot.offset + slot.numel].view(slot.shape)
                if slot.param is not None:
                    dest.copy_(params[slot.param][r])
                else:
                    assert slot.buffer is not None
                    dest.copy_(self.buffer_tensors[slot.buffer])
            fingerprints[client] = self.sink.take()
            self.sink.fold(float(n))

    def train(self, clients: Sequence[int] | None, fingerprints: torch.Tensor) -> list[ClientTiming]:
        if clients is not None and tuple(clients) != self.clients:
            raise ModeFailure("vectorized trains all of a worker's clients at once")
        dev = self.torch_device
        synchronize(dev)
        t0 = time.perf_counter()
        params = self._load(self.global_state)
        synchronize(dev)
        t1 = time.perf_counter()
        try:
            with torch.random.fork_rng(devices=[]):
                self._train(params)
        except Exception as exc:
            raise ModeFailure(
                f"vectorized: clients {list(self.clients)} on {self.device_id} raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        synchronize(dev)
        t2 = time.perf_counter()
        self._write(params, fingerprints)
        synchronize(dev)
        t3 = time.perf_counter()
        total = float(sum(self.sizes))
        out = []
        for client, n in zip(self.clients, self.sizes, strict=True):
            share = n / total
            phases = {"setup": (t1 - t0) * share, "compute": (t2 - t1) * share,
                      "write": (t3 - t2) * share}
            out.append(ClientTiming(
                client=client, device=self.device_id, worker=self.worker, samples=n,
                load_s=phases["setup"], train_s=phases["compute"], write_s=phases["write"],
                start_s=t0, end_s=t3, phases=phases,
            ))
        return out

    def finish(self) -> float:
        self.sink.finish()
        return self.sink.weight


def make_vectorized_body(setup: WorkerSetup, spec: WorkerSpec, torch_device: str) -> VectorizedBody:
    return VectorizedBody(setup, spec, torch_device)


class VectorizedMode(ProcessModeBase):
    name = "vectorized"
    trainer = "gpubench.modes.vectorized:make_vectorized_body"
    # On CUDA the batched convolutions run other (TF32) kernels than serial's: measured on an
    # H200, cnn's aggregate differed by 1.0e-4 at batch 128 and 9.4e-4 at batch 32 (other
    # modes: 1.5e-4), so 4x the default (see gpubench.equivalence).
    cuda_tolerance_scale = 4.0
    supports_dynamic = False  # a device's clients are one batched computation

    def not_reproducible(self, draws_global_rng: bool) -> str | None:
        if not draws_global_rng:
            return None
        if any(d.is_cuda for d in self.plan.devices):
            return (
                "the case draws from torch's global RNG (e.g. Dropout); on CUDA, dropout's "
                "fused kernel draws its masks in another order than per-client masks"
            )
        model = load_case(self.plan.config.case).build_model()
        if StackedSequential.reproduces_dropout(model):
            return None
        return (
            "the case draws from torch's global RNG (e.g. Dropout) in layers that vmap runs "
            "with a mask per client of its own; only nn.Dropout in an nn.Sequential gets "
            "serial's masks"
        )

    def make_specs(self) -> list[WorkerSpec]:
        return plan_workers(self.plan, self.plan.devices, 1)

    def start(self) -> None:
        # Refuse a BatchNorm model here, with the layer's name, before any worker starts.
        check_vectorizable(load_case(self.plan.config.case).build_model())
        super().start()
