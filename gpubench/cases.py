"""The ``Case`` contract: which model to train and on what data.

A case is looked up by a *spec* string rather than passed as an object, so that a worker
process can load exactly the same case again: a built-in name (``cnn``), a module attribute
(``package.module:NAME``) or a file (``path/to/file.py:NAME``). ``NAME`` is a :class:`Case`
or a callable returning one.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpubench.config import ConfigError, Partition, SampleSizes

if TYPE_CHECKING:
    import torch
    from torch import nn


def derive_seed(*parts: int | str) -> int:
    """A stable 63-bit seed from parts (independent of PYTHONHASHSEED and of the process)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


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

    proto_gen = torch.Generator().manual_seed(derive_seed(seed, "prototypes"))
    prototypes = torch.randn((num_classes, *input_shape), generator=proto_gen)
    gen = torch.Generator().manual_seed(derive_seed(seed, "client", client))
    if partition.kind == "dirichlet":
        rng = np.random.default_rng(derive_seed(seed, "labels", client))
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
        int(np.random.default_rng(derive_seed(seed, "size", c)).integers(sizes.low, sizes.high + 1))
        for c in range(clients)
    ]


@dataclass(frozen=True)
class Case:
    """A model and its per-client data.

    ``make_data(seed, client, n, partition) -> (x, y)`` defaults to synthetic data shaped
    ``input_shape`` with ``num_classes`` labels; ``loss(logits, y)`` defaults to cross entropy.
    """

    name: str
    build_model: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    num_classes: int
    description: str = ""
    make_data: Callable[[int, int, int, Partition], tuple[Any, Any]] | None = None
    loss: Callable[[Any, Any], Any] | None = None

    def data(self, seed: int, client: int, n: int, partition: Partition) -> tuple[Any, Any]:
        if self.make_data is not None:
            return self.make_data(seed, client, n, partition)
        return synthetic_data(self.input_shape, self.num_classes, seed, client, n, partition)

    def loss_fn(self) -> Callable[[Any, Any], Any]:
        if self.loss is not None:
            return self.loss
        from torch.nn import functional

        return functional.cross_entropy


def builtin_cases() -> dict[str, Case]:
    from bench_cases import CATALOGUE

    return dict(CATALOGUE)


def _from_object(obj: Any, spec: str) -> Case:
    if isinstance(obj, Case):
        return obj
    if callable(obj):
        made = obj()
        if isinstance(made, Case):
            return made
    raise ConfigError(f"--case {spec!r}: the object is not a gpubench Case (nor returns one)")


def load_case(spec: str) -> Case:
    """Resolve a case spec (see the module docstring); errors are ConfigErrors."""
    builtins = builtin_cases()
    if spec in builtins:
        return builtins[spec]
    if ":" not in spec:
        raise ConfigError(
            f"unknown case {spec!r}: built-in cases are {', '.join(sorted(builtins))}; "
            "a case of your own is package.module:NAME or path/to/file.py:NAME"
        )
    target, _, attr = spec.rpartition(":")
    if not attr:
        raise ConfigError(f"--case {spec!r}: missing NAME after ':'")
    if target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"--case {spec!r}: no such file {target}")
        mod_name = f"_gpubench_case_{derive_seed(str(path)):x}"
        module = sys.modules.get(mod_name)
        if module is None:
            file_spec = importlib.util.spec_from_file_location(mod_name, path)
            if file_spec is None or file_spec.loader is None:
                raise ConfigError(f"--case {spec!r}: cannot load {target} as Python")
            module = importlib.util.module_from_spec(file_spec)
            sys.modules[mod_name] = module
            try:
                file_spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[mod_name]
                raise ConfigError(f"--case {spec!r}: {target} failed to import: {exc}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ConfigError(f"--case {spec!r}: cannot import {target}: {exc}") from None
    if not hasattr(module, attr):
        raise ConfigError(f"--case {spec!r}: {target} has no attribute {attr!r}")
    return _from_object(getattr(module, attr), spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
