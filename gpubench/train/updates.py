"""What a worker hands back for a round: per-client fingerprints and a FedAvg partial sum.

Memory must not grow with clients x model, so no mode returns every client's trained state.
A worker subtracts the round's global model from each client's trained state (its *update*),
takes a fingerprint of the update, and folds the update, weighted by the client's samples,
into one partial sum. The parent adds the workers' partial sums and divides by the total
weight: FedAvg, for O(workers x state) memory.

The fingerprint is a fixed linear sketch: the update vector, padded to ``K x m``, cut into
``K`` consecutive blocks, each summed with fixed random signs (one ``K x m`` by ``m``
matrix-vector product, ~2 ms for ResNet-18 on one core). Two updates that differ anywhere
give different fingerprints with probability one, the fingerprint's size scales with the
update's, and because it is linear the harness can check that the aggregate's fingerprint is
the weighted mean of the clients': a partial sum that does not hold what the fingerprints
claim is caught too.

Accumulation: updates are added in float32 into a block of at most ``ACCUMULATE_BLOCK``
clients, and each block is added into a float64 sum. An update is small next to the state,
so float32 rounding inside a block is far below one float32 step of the state: the
aggregate does not depend on which worker, or mode, added which client (float64 adds are
exact to ~1e-16 relative, whatever their order). A float32 add is memory-bound (~5 ms for
ResNet-18 on one core); a float64 add of a float32 vector costs ~3x that, paid once a block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from gpubench.cases.seeds import derive_seed

FINGERPRINT_SIZE = 16
ACCUMULATE_BLOCK = 32
GAP_CHUNK = 1 << 18  # floats compared at a time by aggregate_gap


class Sketch:
    """The fingerprint: ``K`` sign-weighted block sums of a (padded) update vector."""

    def __init__(self, state_size: int, seed: int, torch_device: str = "cpu") -> None:
        self.k = FINGERPRINT_SIZE
        self.m = max(1, math.ceil(state_size / self.k))
        self.padded = self.k * self.m
        gen = torch.Generator().manual_seed(derive_seed(seed, "fingerprint"))
        signs = torch.randint(0, 2, (self.m,), generator=gen, dtype=torch.float32) * 2 - 1
        self.signs = signs.to(torch_device)
        self.signs64 = signs.to(torch.float64)

    def __call__(self, padded: torch.Tensor) -> torch.Tensor:
        """Fingerprint of a padded float32 vector (on its device), as float64 on the host."""
        return (padded.view(self.k, self.m) @ self.signs).to(torch.float64).cpu()

    def of_vector(self, vector: torch.Tensor | FedAvgUpdate) -> torch.Tensor:
        """Fingerprint of an unpadded host vector (any float dtype, or a FedAvg update read
        from its partial sums), computed in float64 a block at a time (no padded float64
        copy of the whole vector)."""
        update = as_update(vector)
        out = torch.zeros(self.k, dtype=torch.float64)
        for i in range(self.k):
            lo, hi = i * self.m, min((i + 1) * self.m, update.size)
            if hi > lo:
                out[i] = update.chunk(lo, hi) @ self.signs64[: hi - lo]
        return out


class FedAvgUpdate:
    """FedAvg's update over the global model, ``sum(partials) / total``, read from the
    workers' partial sums a chunk at a time: checking a round holds no state-sized copy.
    :meth:`materialise` makes one, for an update that must outlive the round's buffers."""

    def __init__(self, partials: Sequence[torch.Tensor], total: float) -> None:
        self.partials = [p.reshape(-1) for p in partials]
        self.total = total
        self.size = int(self.partials[0].numel())

    def chunk(self, lo: int, hi: int) -> torch.Tensor:
        """Elements ``lo:hi`` as float64 (the same adds, in the same order, as a whole)."""
        acc = self.partials[0][lo:hi].to(torch.float64, copy=True)
        for partial in self.partials[1:]:
            acc.add_(partial[lo:hi].to(torch.float64))
        return acc.div_(self.total)

    def materialise(self) -> torch.Tensor:
        return self.chunk(0, self.size)


def as_update(vector: torch.Tensor | FedAvgUpdate) -> FedAvgUpdate:
    """A whole vector read like an update (its one partial sum, over a total of 1)."""
    return vector if isinstance(vector, FedAvgUpdate) else FedAvgUpdate([vector], 1.0)


def add_into_float64(acc: torch.Tensor, block: torch.Tensor) -> None:
    """``acc += block`` with ``acc`` float64 and ``block`` float32 on the same device.

    On the CPU torch's type-promoting add is ~4x slower than numpy's for this (57 vs 15 ms
    for ResNet-18), so numpy adds in place there.
    """
    if acc.device.type == "cpu":
        a = acc.numpy()
        np.add(a, block.numpy(), out=a)
    else:
        acc.add_(block)


class UpdateSink:
    """One worker's end of a round: each trained client's update, fingerprint and fold.

    The caller writes a client's trained state into ``row[:size]`` and calls :meth:`take`.
    """

    def __init__(self, state_size: int, seed: int, torch_device: str) -> None:
        self.size = state_size
        self.torch_device = torch_device
        self.sketch = Sketch(state_size, seed, torch_device)
        self.row = torch.zeros(self.sketch.padded, dtype=torch.float32, device=torch_device)
        self.block = torch.zeros(state_size, dtype=torch.float32, device=torch_device)
        self.in_block = 0
        # The float64 sum when it is not accumulated in the caller's buffer; made when needed.
        self.own_sum: torch.Tensor | None = None
        self.sum = torch.zeros(0, dtype=torch.float64)
        self.out: torch.Tensor | None = None
        self.global_state = torch.zeros(0)
        self.weight = 0.0

    def begin(self, global_state: torch.Tensor, out: torch.Tensor | None = None) -> None:
        """Start a round from ``global_state``; the partial sum ends in ``out`` (host
        float64) if given. On the CPU the sum is accumulated in ``out`` itself."""
        self.global_state = global_state.to(self.torch_device)
        self.out = out
        if out is not None and self.torch_device == "cpu":
            self.sum = out
        else:
            if self.own_sum is None:
                self.own_sum = torch.zeros(self.size, dtype=torch.float64, device=self.torch_device)
            self.sum = self.own_sum
        self.sum.zero_()
        self.block.zero_()
        self.in_block = 0
        self.weight = 0.0

    def state_view(self) -> torch.Tensor:
        """Where the caller writes a client's trained state (float32, on the device)."""
        return self.row[: self.size]

    def take(self) -> torch.Tensor:
        """Turn the state in :meth:`state_view` into the client's update; its fingerprint."""
        self.row[: self.size].sub_(self.global_state)
        return self.sketch(self.row)

    def fold(self, weight: float) -> None:
        """Add the update taken last, times ``weight``, to the partial sum."""
        self.block.add_(self.row[: self.size], alpha=weight)
        self.weight += weight
        self.in_block += 1
        if self.in_block >= ACCUMULATE_BLOCK:
            self.flush()

    def flush(self) -> None:
        if self.in_block:
            add_into_float64(self.sum, self.block)
            self.block.zero_()
            self.in_block = 0

    def finish(self) -> torch.Tensor:
        """The round's partial sum (float64, on the host), with every block added."""
        self.flush()
        if self.out is not None:
            if self.sum is not self.out:
                self.out.copy_(self.sum)
            return self.out
        return self.sum.cpu()


def aggregate_gap(
    global_state: torch.Tensor, update: torch.Tensor | FedAvgUpdate, reference: torch.Tensor
) -> tuple[float, float]:
    """How far a FedAvg ``update`` is from the ``reference`` update of the same round:
    ``max |aggregate - reference's|`` with each aggregate ``global + update`` rounded to
    float32 (the model a round hands on), and ``max |update - reference| / max |reference|``.

    Computed ``GAP_CHUNK`` floats at a time: no state-sized temporary.
    """
    flat_g = global_state.reshape(-1)
    mine_u, ref_u = as_update(update), as_update(reference)
    gap = rel_gap = scale = 0.0
    for lo in range(0, mine_u.size, GAP_CHUNK):
        hi = min(lo + GAP_CHUNK, mine_u.size)
        g = flat_g[lo:hi].to(torch.float64)
        u, r = mine_u.chunk(lo, hi), ref_u.chunk(lo, hi)
        mine, theirs = (g + u).to(torch.float32), (g + r).to(torch.float32)
        gap = max(gap, _largest(mine - theirs))
        rel_gap = max(rel_gap, _largest(u - r))
        scale = max(scale, _largest(r))
    relative = rel_gap / scale if scale else (0.0 if rel_gap == 0 else math.inf)
    return gap, relative


class LastUpdates:
    """Each mode's last FedAvg update against ``reference``'s (serial's), in bounded memory:
    the reference is kept, another mode's is compared with it as soon as both exist (read
    from the mode's partial sums) and kept only until then. The parent so holds one
    state-sized vector for this, not one (and an aggregate) per mode."""

    def __init__(self, reference: str | None = "serial") -> None:
        self.name = reference  # None: no mode of the run is the reference, nothing is kept
        self.reference: torch.Tensor | None = None
        self.pending: dict[str, torch.Tensor] = {}
        self.gaps: dict[str, tuple[float, float]] = {}  # mode -> aggregate_gap(...)

    def add(self, mode: str, update: FedAvgUpdate, global_state: torch.Tensor) -> None:
        if self.name is None:
            return
        if mode != self.name:
            if self.reference is None:  # the reference has not got here (yet)
                self.pending[mode] = update.materialise()
            else:
                self.gaps[mode] = aggregate_gap(global_state, update, self.reference)
            return
        self.reference = update.materialise()
        self.gaps[mode] = (0.0, 0.0)  # the reference itself
        for name, mine in self.pending.items():
            self.gaps[name] = aggregate_gap(global_state, mine, self.reference)
        self.pending.clear()


def _largest(t: torch.Tensor) -> float:
    """max |t| (inf if any element is NaN)."""
    m = float(t.abs().max())
    return math.inf if math.isnan(m) else m


def nan_fill(t: torch.Tensor) -> torch.Tensor:
    """Fill a round's output buffer with values that cannot pass for a result."""
    return t.fill_(float("nan"))
