"""Every seed a run derives from its ``--seed``, in one place.

A derived seed depends on the parts only (not on ``PYTHONHASHSEED``, the process or the mode),
so a worker process, a thread and the parent compute the same one. Each helper names one use;
two uses never share parts, so their random streams are independent.
"""

from __future__ import annotations

import hashlib


def derive_seed(*parts: int | str) -> int:
    """A stable 63-bit seed from parts (independent of PYTHONHASHSEED and of the process)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def init_seed(seed: int) -> int:
    """The global model's initial weights (built once, in the parent)."""
    return derive_seed(seed, "init")


def shuffle_seed(seed: int, client: int, epoch: int) -> int:
    """The order in which one client visits its samples in one local epoch."""
    return derive_seed(seed, "shuffle", client, epoch)


def prototype_seed(seed: int) -> int:
    """The class prototypes of synthetic data (shared by every client: one task)."""
    return derive_seed(seed, "prototypes")


def client_data_seed(seed: int, client: int) -> int:
    """One client's synthetic labels (IID) and noise."""
    return derive_seed(seed, "client", client)


def label_mix_seed(seed: int, client: int) -> int:
    """One client's label mix under a ``dirichlet:ALPHA`` partition."""
    return derive_seed(seed, "labels", client)


def size_seed(seed: int, client: int) -> int:
    """One client's sample count when ``--samples-per-client`` is a range."""
    return derive_seed(seed, "size", client)
