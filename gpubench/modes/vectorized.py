"""``vectorized``: all clients of a device trained at once, as one batched computation.

The clients' models are stacked (one leading "client" dimension on every parameter) and a
step of every client is one ``vmap`` over that dimension, with ``torch.func.functional_call``
running the case's own module, and one backward pass. SGD with momentum runs on the stacked
tensors through ``torch.optim.sgd.sgd``, the function ``torch.optim.SGD`` itself steps with,
and each client draws its batches from its own shuffle order (the same generator as
:func:`gpubench.train.fl.local_train`), so every client follows the same trajectory as in
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

One worker process per device (the persistent pool). Its clients train in *chunks*: as many
clients stacked at once as fit in the worker's part of ``VECTORIZE_SHARE`` of the memory free
at each round's start (the GPU's, with what the worker's allocator holds unused, or the
host's), at the bytes per client of one probe step at start-up (on a GPU its measured peak; on
the CPU its saved activations, measured, and each client's state, gradient and momentum), or
``--vectorize-chunk N``. A chunk that runs out of device memory is halved and tried again (no
larger chunk is tried after); the time lost is its clients' ``oom_retry`` phase, and the mode
records the chunk and the retries (``chunking``). The chunks train one after another into the
same update sink, in client order, so the result is the unchunked one (each client's
arithmetic is its own).

Tolerance: the batched kernels (bmm over clients) sum each gradient in another order than
one client's own matmuls, so the result is not bitwise serial's. The difference is the size
of the run's measured noise floor (float32 against float64, ``gpubench.run.equivalence``)
and far inside the tolerance on CPU slots (at least 1e-3): per client, relative to its
update, up to 1e-6 on mlp (10 clients, batch 64, one slot of two cores and two slots of
one, every chunk size from 1 to 9 alike: a chunk's clients do their own arithmetic) and
2e-5 on cnn, whose vmapped convolutions run as grouped ones. On CUDA, convolutions in TF32
make the kernel choice visible (up to 9.4e-4 in the aggregate), so the mode asks for 4x the
CUDA tolerance there (``cuda_tolerance_scale``), which the cap keeps at 0.1
(``gpubench.run.equivalence.decide_tolerance``); a client beyond it is adjudicated
(``gpubench.run.adjudicate``).

Per-client timings: every client of a chunk spans the chunk's batched window (``start_s`` to
``end_s``), and its phases (``data``: the chunk's data, made again when the data budget did not
keep it) are its share of the window's, in proportion to its samples, so that the clients'
times add up to the worker's busy time.

Not supported: layers that keep running statistics (BatchNorm): vmap cannot update an
unbatched buffer from batched values, and a batched one would not be what serial computes.
The mode fails at start with the layer's name. Buffers of other kinds are passed unbatched
and written back unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from gpubench.cases import load_case
from gpubench.cases.seeds import derive_seed
from gpubench.machine.cuda import free_memory, release_device_memory, synchronize
from gpubench.machine.schedstat import start_waiting
from gpubench.modes.base import ModeFailure, NotApplicable, RoundOutput
from gpubench.modes.facts import FACTS, placed
from gpubench.modes.pool import WorkerSetup, WorkerSpec
from gpubench.modes.processes import ProcessModeBase, plan_workers
from gpubench.modes.stacked import (
    Chunk,
    StackedSequential,
    StateSlot,
    check_vectorizable,
    chunk_size,
    chunks,
    layout_order,
    make_chunk,
    sgd_step,
    shuffle_orders,
    stacked_in_order,
    state_layout,
)
from gpubench.results import ClientTiming
from gpubench.train.clientdata import data_bytes
from gpubench.train.updates import UpdateSink

# A chunk's phase: the time of the attempts that ran out of memory before it trained.
OOM_RETRY = "oom_retry"

# --- the worker body ------------------------------------------------------------------------


class VectorizedBody:
    """A worker's clients as stacked models, in chunks of clients that fit its memory:
    ``train`` trains each chunk at once, the chunks one after another."""

    def __init__(self, setup: WorkerSetup, spec: WorkerSpec, torch_device: str) -> None:
        from torch.func import functional_call, vmap

        from gpubench.train.fl import build_datasets

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
        self.store = build_datasets(
            case, setup.train, spec.clients, setup.sizes, torch_device, spec.peers
        )
        self.sizes = [int(setup.sizes[c]) for c in spec.clients]
        self.slots = state_layout(self.model)
        self.param_slots: dict[str, StateSlot] = {}
        for slot in self.slots:
            if slot.param is not None:
                self.param_slots.setdefault(slot.param, slot)
        self.buffer_tensors = dict(self.model.named_buffers())
        self.state_size = sum(slot.numel for slot in self.slots)
        self.sink = UpdateSink(self.state_size, self.cfg.seed, torch_device)

        model, loss_fn = self.model, self.loss_fn

        def forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> Any:
            return functional_call(model, params, (x,))

        # randomness="different": dropout draws its own mask for every client.
        self.stacked = StackedSequential.of(model)
        self.forward: Any = self.stacked or vmap(forward, randomness="different")
        self.losses = vmap(loss_fn, randomness="different")
        # The default loss (cross entropy) is computed for the whole group at once.
        self.plain_cross_entropy = case.loss is None
        # Each parameter's memory layout (dimension order), from its gradient's.
        self.layouts: dict[str, tuple[int, ...]] = {}
        self.per_client = self._probe()
        self.option = (setup.options or {}).get("vectorize_chunk")
        self.peers = spec.peers
        # Below the smallest chunk that ran out of memory: no chunk is tried that large again.
        self.cap = max(1, len(self.clients))
        self.chunk_size = 0
        self.chunks: list[Chunk] = []
        self._resize()

    def _resize(self) -> None:
        """The chunk from the memory free now, at each round's start (what the other modes
        and programs on the device leave by then), at most ``cap``; ``--vectorize-chunk``
        overrides the estimate, not an out-of-memory retry. Chunks are made again (their
        kept data with them) only when the size changes."""
        size = min(self.cap, chunk_size(len(self.clients), self.per_client, self._available(),
                                        self.peers, self.option))
        if size != self.chunk_size:
            self.chunk_size = size
            self.chunks = [self._chunk(r) for r in chunks(len(self.clients), size)]

    def _chunk(self, positions: range) -> Chunk:
        return make_chunk(
            [self.clients[p] for p in positions], [self.sizes[p] for p in positions],
            self.cfg.batch_size, self.cfg.local_epochs, self.torch_device,
        )

    def _data(self, chunk: Chunk) -> tuple[torch.Tensor, torch.Tensor]:
        """The chunk's samples in one tensor (kept while the data budget allows)."""
        if chunk.data is not None:
            return chunk.data
        made = [self.store.make(c) for c in chunk.clients]
        data = torch.cat([x for x, _ in made]), torch.cat([y for _, y in made])
        del made
        if self.store.reserve(data_bytes(*data)):
            chunk.data = data
        return data

    def _available(self) -> int:
        """Bytes free for stacked clients: the GPU's free memory (with this worker's unused
        cache), or the host's."""
        free = free_memory(self.torch_device)
        if free is not None:
            return free
        import psutil

        return int(psutil.virtual_memory().available)

    def _probe(self) -> int:
        """One step of the first (up to) two clients from the initial weights: each stacked
        parameter's layout, and the bytes one more stacked client takes (measured on a GPU;
        on the CPU its saved activations, measured, and its state, gradient and momentum)."""
        from gpubench.train.casecheck import saved_tensor_bytes

        if not self.clients:
            return 1
        probe = self._chunk(range(min(2, len(self.clients))))
        x, y = self._data(probe)
        probe.data = None
        n = len(probe.clients)
        size = min(min(probe.sizes), self.cfg.batch_size)
        rows = (probe.offsets[:, None] + torch.arange(size)).to(self.torch_device)
        cuda = [torch.device(self.torch_device).index or 0] if self.torch_device != "cpu" else []
        if cuda:
            torch.cuda.synchronize(self.torch_device)
            torch.cuda.reset_peak_memory_stats(self.torch_device)
            before = torch.cuda.memory_allocated(self.torch_device)
        stacked = {
            k: v.detach().unsqueeze(0).expand(n, *v.shape).contiguous()
            for k, v in self.model.named_parameters()
        }
        with torch.random.fork_rng(devices=cuda), saved_tensor_bytes(stacked.values()) as saved:
            grads = self._grads(stacked, *self._batch(rows, x, y))  # dropout's stream untouched
        self.layouts = {k: layout_order(g.stride()) for k, g in grads.items()}
        batch_share = self.cfg.batch_size / size
        data = max(self.sizes) * data_bytes(x, y) // max(1, len(x))
        if cuda:
            peak = torch.cuda.max_memory_allocated(self.torch_device) - before
            return int(peak * batch_share / n) + 4 * self.state_size + data
        return int(2 * saved[0] * batch_share / n) + 3 * 4 * self.state_size + data

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

    def _stacked(self, name: str, one: torch.Tensor, n: int) -> torch.Tensor:
        """``one`` repeated for ``n`` clients, in the layout its gradients will have."""
        order = self.layouts.get(name)
        if order is None:
            return one.unsqueeze(0).repeat(n, *([1] * one.dim()))
        return stacked_in_order(one, n, order)

    def _batch(
        self, rows: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples at ``rows`` (clients x batch) of a chunk's ``x`` and ``y``, gathered
        with ``index_select`` on row views (a plain row copy, faster than indexing)."""
        flat = rows.reshape(-1)
        xs = torch.index_select(x.reshape(x.shape[0], -1), 0, flat)
        ys = torch.index_select(y.reshape(y.shape[0], -1), 0, flat)
        return xs.view(*rows.shape, *x.shape[1:]), ys.view(*rows.shape, *y.shape[1:])

    def _load(self, global_state: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
        flat = global_state.to(self.torch_device)
        params = {}
        for name, slot in self.param_slots.items():
            one = flat[slot.offset : slot.offset + slot.numel].view(slot.shape)
            params[name] = self._stacked(name, one, n)
        with torch.no_grad():
            for slot in self.slots:
                if slot.buffer is not None:
                    buf = self.buffer_tensors[slot.buffer]
                    buf.copy_(flat[slot.offset : slot.offset + slot.numel].view_as(buf))
        return params

    def _train(self, params: dict[str, torch.Tensor], chunk: Chunk, x: torch.Tensor,
               y: torch.Tensor) -> None:
        momenta: dict[str, torch.Tensor] = {}
        orders = shuffle_orders(chunk, self.cfg.seed, self.cfg.local_epochs, self.torch_device)
        # Serial seeds the global RNG per (seed, client, epoch); each client's generator here.
        gens = [torch.Generator(device=self.torch_device) for _ in chunk.clients]
        epoch_of = [-1] * len(chunk.clients)
        for t, groups in enumerate(chunk.steps):
            for group in groups:
                rows = group.row_list
                for r, epoch in zip(rows, group.epoch_list, strict=True):
                    if epoch_of[r] != epoch:
                        gens[r].manual_seed(
                            derive_seed(self.cfg.seed, "rng", chunk.clients[r], epoch)
                        )
                        epoch_of[r] = epoch
                if self.stacked is not None:
                    self.stacked.generators = [gens[r] for r in rows]
                idx = orders[group.rows[:, None], group.epochs[:, None], group.positions]
                mine = params if group.all_rows else {k: v[group.rows] for k, v in params.items()}
                grads = self._grads(mine, *self._batch(idx, x, y))
                sgd_step(params, momenta, grads, group, first=t == 0, lr=self.cfg.lr,
                         momentum=self.cfg.momentum)

    def begin(self, global_state: torch.Tensor, partial: torch.Tensor) -> None:
        self.sink.begin(global_state, partial)
        self.global_state = global_state

    def _write(self, params: dict[str, torch.Tensor], fingerprints: torch.Tensor,
               chunk: Chunk) -> None:
        """Every client's state through the sink: fingerprint into its row, update folded."""
        row = self.sink.state_view()
        for r, (client, n) in enumerate(zip(chunk.clients, chunk.sizes, strict=True)):
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
        self._resize()
        out: list[ClientTiming] = []
        pending = list(self.chunks)
        lost_since: float | None = None  # the start of attempts that ran out of memory
        while pending:
            chunk = pending.pop(0)
            t0 = time.perf_counter()
            timings = self._train_chunk(chunk, fingerprints)
            if timings is None:  # out of memory before any client was written: halve, retry
                lost_since = t0 if lost_since is None else lost_since
                pending[:0] = self._halve(chunk)
                continue
            if lost_since is not None:
                timings = lost_time(timings, lost_since)
                lost_since = None
            out.extend(timings)
        if self.cap < self.chunk_size:  # the next round's chunks no larger than what fitted
            self._resize()
        return out

    def _halve(self, chunk: Chunk) -> list[Chunk]:
        """The chunk's clients in chunks of half its size (and no larger chunk again), once the
        failed attempt's memory is released; a single client that does not fit fails."""
        n = len(chunk.clients)
        release_device_memory([self.torch_device])
        if n == 1:
            raise ModeFailure(
                f"vectorized: client {chunk.clients[0]} alone does not fit in {self.device_id}'s "
                "free memory"
            )
        self.cap = min(self.cap, n // 2)
        first = self.clients.index(chunk.clients[0])
        return [self._chunk(range(first + r.start, first + r.stop))
                for r in chunks(n, self.cap)]

    def _train_chunk(
        self, chunk: Chunk, fingerprints: torch.Tensor
    ) -> list[ClientTiming] | None:
        """The chunk's clients at once; each client's phases are its share (by samples) of
        the chunk's, and its window the chunk's. None: the chunk ran out of device memory
        while it trained (nothing of it written)."""
        dev = self.torch_device
        synchronize(dev)
        t0 = time.perf_counter()
        waited = start_waiting()
        x, y = self._data(chunk)
        synchronize(dev)
        td = time.perf_counter()
        params: dict[str, torch.Tensor] = {}
        t1 = td
        ran_out = False
        try:
            params = self._load(self.global_state, len(chunk.clients))
            synchronize(dev)
            t1 = time.perf_counter()
            with torch.random.fork_rng(devices=[]):
                self._train(params, chunk, x, y)
        except torch.cuda.OutOfMemoryError:
            ran_out = True  # released by the caller, outside this block where no frame holds it
        except Exception as exc:
            raise ModeFailure(
                f"vectorized: clients {list(chunk.clients)} on {self.device_id} raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if ran_out:
            del params, x, y
            chunk.data = None
            return None
        synchronize(dev)
        t2 = time.perf_counter()
        self._write(params, fingerprints, chunk)
        del params, x, y
        synchronize(dev)
        t3 = time.perf_counter()
        wait = waited()  # the chunk's, shared by its clients as their phases are
        total = float(sum(chunk.sizes))
        out = []
        for client, n in zip(chunk.clients, chunk.sizes, strict=True):
            share = n / total
            phases = {"data": (td - t0) * share, "setup": (t1 - td) * share,
                      "compute": (t2 - t1) * share, "write": (t3 - t2) * share}
            out.append(ClientTiming(
                client=client, device=self.device_id, worker=self.worker, samples=n,
                load_s=(t1 - t0) * share, train_s=phases["compute"], write_s=phases["write"],
                start_s=t0, end_s=t3, phases=phases,
                wait_s=None if wait is None else wait * share,
            ))
        return out

    def finish(self) -> float:
        self.sink.finish()
        return self.sink.weight


def lost_time(timings: list[ClientTiming], since: float) -> list[ClientTiming]:
    """A chunk's timings with the attempts that ran out of memory before it (from ``since``)
    in its window: each client's share of them as its ``oom_retry`` phase."""
    window = timings[0].start_s - since
    total = float(sum(t.samples for t in timings))
    return [
        replace(t, start_s=since, phases={**t.phases, OOM_RETRY: window * t.samples / total})
        for t in timings
    ]


def chunking(timings: Sequence[ClientTiming], before: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the round's chunks were: the clients stacked at once (largest chunk per worker, of
    the last round), and over every round so far the chunks that trained after an attempt ran
    out of device memory (each halved the chunk) and the seconds those attempts took."""
    windows: dict[tuple[int, float], list[ClientTiming]] = {}
    for t in timings:
        windows.setdefault((t.worker, t.end_s), []).append(t)
    largest: dict[str, int] = {}
    retried, lost = 0, 0.0
    for (worker, _), clients in windows.items():
        largest[str(worker)] = max(largest.get(str(worker), 0), len(clients))
        spent = sum(t.phases.get(OOM_RETRY, 0.0) for t in clients)
        if spent > 0:
            retried += 1
            lost += spent
    before = before or {}
    return {
        "vectorize_chunk": largest,
        "oom_retried_chunks": int(before.get("oom_retried_chunks", 0)) + retried,
        "oom_lost_s": float(before.get("oom_lost_s", 0.0)) + lost,
    }


def make_vectorized_body(setup: WorkerSetup, spec: WorkerSpec, torch_device: str) -> VectorizedBody:
    return VectorizedBody(setup, spec, torch_device)


class VectorizedMode(ProcessModeBase):
    name = "vectorized"
    facts = FACTS[name]
    trainer = "gpubench.modes.vectorized:make_vectorized_body"
    # On CUDA the batched convolutions run other (TF32) kernels than serial's: measured on an
    # H200, cnn's aggregate differed by 1.0e-4 at batch 128 and 9.4e-4 at batch 32 (other
    # modes: 1.5e-4), so 4x the default (see gpubench.run.equivalence).
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
        return plan_workers(self.plan, *placed(self.facts, self.plan.devices, self.plan.config))

    def run_round(self, global_state: torch.Tensor, fingerprints: torch.Tensor) -> RoundOutput:
        out = super().run_round(global_state, fingerprints)
        self.chunking = chunking(out.clients, getattr(self, "chunking", None))
        return out

    def extra_record(self) -> Mapping[str, Any]:
        return getattr(self, "chunking", None) or {}

    def start(self) -> None:
        if load_case(self.plan.config.case).trains_itself:
            raise NotApplicable(
                "vectorized runs gpubench's own batched SGD; not applicable to a case that "
                "trains itself (its own train, or a Flower app)"
            )
        if not self.plan.config.train.pipeline.idealised:
            raise NotApplicable(
                "vectorized batches the idealised client only (device data, one model per "
                "worker, plain SGD); not applicable with these pipeline options"
            )
        # Refuse a BatchNorm model here, with the layer's name, before any worker starts.
        check_vectorizable(load_case(self.plan.config.case).build_model())
        super().start()
