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

import numpy as np
import torch

from gpubench.seeds import derive_seed

FINGERPRINT_SIZE = 16
ACCUMULATE_BLOCK = 32


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

    def of_vector(self, vector: torch.Tensor) -> torch.Tensor:
        """Fingerprint of an unpadded host vector (any float dtype), computed in float64."""
        v = torch.zeros(self.padded, dtype=torch.float64)
        v[: vector.numel()] = vector.reshape(-1).to(torch.float64)
        return v.view(self.k, self.m) @ self.signs64


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


def nan_fill(t: torch.Tensor) -> torch.Tensor:
    """Fill a round's output buffer with values that cannot pass for a result."""
    return t.fill_(float("nan"))
