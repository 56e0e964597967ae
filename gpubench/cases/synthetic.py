"""Synthetic per-client data and per-client sample counts, both drawn from the run's seed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpubench.cases.seeds import client_data_seed, label_mix_seed, prototype_seed, size_seed
from gpubench.config import Partition, SampleSizes

if TYPE_CHECKING:
    import torch


def synthetic_data(
    input_shape: tuple[int, ...],
    num_classes: int,
    seed: int,
    client: int,
    n: int,
    partition: Partition,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable synthetic dataset for one client: class prototypes plus noise.

    The prototypes depend on the seed only (every client learns the same task); labels and
    noise depend on (seed, client). ``dirichlet:ALPHA`` draws each client's label mix from a
    Dirichlet(ALPHA) distribution (smaller ALPHA, stronger skew).
    """
    import numpy as np
    import torch

    proto_gen = torch.Generator().manual_seed(prototype_seed(seed))
    prototypes = torch.randn((num_classes, *input_shape), generator=proto_gen)
    gen = torch.Generator().manual_seed(client_data_seed(seed, client))
    if partition.kind == "dirichlet":
        rng = np.random.default_rng(label_mix_seed(seed, client))
        probs = rng.dirichlet([partition.alpha or 1.0] * num_classes)
        labels = torch.from_numpy(rng.choice(num_classes, size=n, p=probs)).long()
    else:
        labels = torch.randint(0, num_classes, (n,), generator=gen)
    noise = torch.randn((n, *input_shape), generator=gen)
    x = 0.5 * prototypes[labels] + noise
    return x.float().contiguous(), labels


def client_sizes(sizes: SampleSizes, seed: int, clients: int) -> list[int]:
    """Samples per client: fixed, or drawn per client from [low, high] by the seed."""
    if sizes.low == sizes.high:
        return [sizes.low] * clients
    import numpy as np

    return [
        int(np.random.default_rng(size_seed(seed, c)).integers(sizes.low, sizes.high + 1))
        for c in range(clients)
    ]
