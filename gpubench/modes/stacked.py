"""The stacked clients of the vectorized mode: a Sequential run layer by layer over a leading
client dimension, the step plan that groups clients by batch size, and the flat layout of a
model's state. See :mod:`gpubench.modes.vectorized` for the mode itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from gpubench.modes.base import ModeFailure


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
    nn.Hardtanh, nn.Softplus, nn.Identity,
)
RANDOM_LAYERS = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)


def _kind(layer: nn.Module) -> str:
    """How :class:`StackedSequential` runs a layer. Exact types only: a subclass may have a
    forward of its own."""
    if type(layer) is nn.Linear:
        return "linear"
    if type(layer) is nn.Flatten:
        return "flatten"
    if type(layer) is nn.Dropout:
        return "dropout"
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
        # Per client (rows of the stacked batch), the generator serial's Dropout would draw
        # from; set by the body before each forward. None: one mask for the whole stack.
        self.generators: list[torch.Generator] | None = None
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
            elif kind == "dropout":
                h = self._dropout(layer, h)
            else:
                own = {name: params[prefix + name] for name in self.own[prefix]}
                h = self.vmapped[prefix](own, h)
        return h

    def _dropout(self, layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """Dropout with the mask serial draws for each client: on the CPU, F.dropout is
        ``input * empty_like(input).bernoulli_(1 - p) / (1 - p)`` from the global generator,
        which serial seeds per (seed, client, epoch); here each client's rows draw from a
        generator seeded the same way, in the same order."""
        assert isinstance(layer, nn.Dropout)
        if not layer.training or layer.p == 0 or self.generators is None:
            return layer(h)
        if layer.p == 1:
            return h * 0
        noise = torch.empty_like(h, memory_format=torch.contiguous_format)
        for row, gen in enumerate(self.generators):
            noise[row].bernoulli_(1 - layer.p, generator=gen)
        noise.div_(1 - layer.p)
        return h * noise

    @staticmethod
    def reproduces_dropout(model: nn.Module) -> bool:
        """Whether every random layer of ``model`` is an ``nn.Dropout`` this class runs with
        serial's masks (on the CPU)."""
        stacked = StackedSequential.of(model)
        if stacked is None:
            return False
        for (_, layer), kind in zip(stacked.layers, stacked.kinds, strict=True):
            if kind == "other" and any(isinstance(m, RANDOM_LAYERS) for m in layer.modules()):
                return False
        return True


# --- chunks of clients -------------------------------------------------------------------------

# The share of the available memory (host, or the GPU's) the stacked clients of all
# vectorized workers on it may take together.
VECTORIZE_SHARE = 0.5


def chunk_size(
    clients: int, per_client: int, available: int, workers: int, option: Any = None
) -> int:
    """How many of a worker's ``clients`` train stacked at once: ``--vectorize-chunk``, else
    as many as fit in the worker's part of ``VECTORIZE_SHARE`` of ``available`` bytes,
    ``per_client`` bytes each (at least one)."""
    if option:
        return max(1, min(clients, int(option)))
    room = int(VECTORIZE_SHARE * available) // max(1, workers)
    return max(1, min(clients, room // max(1, per_client)))


def layout_order(strides: Sequence[int]) -> tuple[int, ...]:
    """A tensor's dimensions from the largest stride to the smallest: its memory order."""
    return tuple(sorted(range(len(strides)), key=lambda d: (-strides[d], d)))


def stacked_in_order(one: torch.Tensor, n: int, order: Sequence[int]) -> torch.Tensor:
    """``one`` repeated for ``n`` clients (a leading dimension), laid out in memory in
    ``order`` (e.g. a linear layer's weight transposed, as its batched gradient comes out)."""
    shape = (n, *one.shape)
    dense = torch.empty([shape[d] for d in order], dtype=one.dtype, device=one.device)
    inverse = sorted(range(len(order)), key=lambda i: order[i])
    dense.copy_(one.expand(shape).permute(list(order)))  # written in its own order
    return dense.permute(inverse)


def chunks(n: int, size: int) -> list[range]:
    """Positions ``0..n-1`` in consecutive runs of ``size`` (the last may be shorter)."""
    return [range(i, min(n, i + size)) for i in range(0, n, max(1, size))]


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
    :func:`gpubench.train.fl.local_train` gives it; step ``t`` is its batch ``t % k`` of epoch
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
class StateSlot:
    """One state_dict entry's place in the flat state vector."""

    offset: int
    shape: torch.Size
    param: str | None  # canonical parameter name (tied weights share one), None: a buffer
    buffer: str | None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def state_layout(model: nn.Module) -> list[StateSlot]:
    """The flat layout of :func:`gpubench.train.fl.flatten_state` (state_dict order)."""
    params = {id(p): n for n, p in model.named_parameters()}
    buffers = {id(b): n for n, b in model.named_buffers()}
    slots, at = [], 0
    for t in model.state_dict(keep_vars=True).values():
        slots.append(StateSlot(at, t.shape, params.get(id(t)), buffers.get(id(t))))
        at += t.numel()
    return slots




# --- a chunk of clients, on the device ----------------------------------------------------------


@dataclass
class StepIndex:
    """A :class:`StepGroup` as index tensors on the device."""

    rows: torch.Tensor
    epochs: torch.Tensor
    positions: torch.Tensor  # (rows x size) positions in each row's shuffle order
    all_rows: bool  # every client of the chunk, in order: no gather/scatter needed
    row_list: tuple[int, ...] = ()  # the same rows and epochs on the host
    epoch_list: tuple[int, ...] = ()


@dataclass
class Chunk:
    """Clients trained stacked at once: their step plan, and their data if kept."""

    clients: tuple[int, ...]
    sizes: list[int]
    offsets: torch.Tensor  # where each client's samples start in the chunk's data
    steps: list[list[StepIndex]]
    data: tuple[torch.Tensor, torch.Tensor] | None = None


def make_chunk(
    clients: Sequence[int], sizes: Sequence[int], batch_size: int, epochs: int, device: str
) -> Chunk:
    n = len(sizes)
    steps = [
        [
            StepIndex(
                torch.tensor(g.rows, device=device),
                torch.tensor(g.epochs, device=device),
                (torch.tensor(g.starts)[:, None] + torch.arange(g.size)).to(device),
                g.rows == tuple(range(n)),
                g.rows,
                g.epochs,
            )
            for g in groups
        ]
        for groups in plan_steps(sizes, batch_size, epochs)
    ]
    offsets = torch.tensor([0, *sizes[:-1]]).cumsum(0)
    return Chunk(tuple(clients), list(sizes), offsets, steps)


def shuffle_orders(chunk: Chunk, seed: int, epochs: int, device: str) -> torch.Tensor:
    """(clients x epochs x max samples) shuffle orders, offset into the chunk's data: each
    client's own generator, as :func:`gpubench.train.fl.local_train` draws it."""
    from gpubench.cases.seeds import derive_seed

    orders = torch.zeros(len(chunk.clients), epochs, max(chunk.sizes), dtype=torch.long)
    for r, (client, n) in enumerate(zip(chunk.clients, chunk.sizes, strict=True)):
        for epoch in range(epochs):
            gen = torch.Generator().manual_seed(derive_seed(seed, "shuffle", client, epoch))
            orders[r, epoch, :n] = torch.randperm(n, generator=gen)
    orders += chunk.offsets[:, None, None]
    return orders.to(device)


@torch.no_grad()
def sgd_step(
    params: dict[str, torch.Tensor],
    momenta: dict[str, torch.Tensor],
    grads: dict[str, torch.Tensor],
    group: StepIndex,
    *,
    first: bool,
    lr: float,
    momentum: float,
) -> None:
    """The group's rows of the stacked tensors take one step of torch.optim.SGD(lr,
    momentum): its own functional update, ``torch.optim.sgd.sgd``. ``momenta`` holds each
    parameter's stacked momentum buffer, made on the first step."""
    from torch.optim.sgd import sgd

    names = list(grads)
    fresh = first or momentum == 0  # no momentum buffer to read
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
        momentum=momentum,
        lr=lr,
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
