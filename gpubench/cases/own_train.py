"""Helpers for cases that bring their own training (``Case.train`` / ``Case.make_dataset``).

What such a case's client does, in gpubench's trainer (:mod:`gpubench.train.apptrainer`): the
round's global model is loaded into the worker's model (on the client's device), the
client's Dataset goes into a ``DataLoader`` (``--batch-size``, shuffled by a generator of
the client's own, seeded from (seed, client)), and ``train(model, loader, cfg, device)``
runs; it returns the examples it trained on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpubench.config import TrainConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import nn


def sgd_train(loss_fn: Callable[[Any, Any], Any]) -> Callable[[nn.Module, Any, TrainConfig, str], int]:
    """The training of a ``make_dataset`` case without ``train``: SGD with momentum over
    the loader's batches (each copied to the device), ``local_epochs`` times."""

    def train(model: nn.Module, loader: Any, cfg: TrainConfig, device: str) -> int:
        import torch

        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        model.train()
        for _ in range(cfg.local_epochs):
            for x, y in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                opt.zero_grad(set_to_none=True)
                loss_fn(model(x), y).backward()
                opt.step()
        return len(loader.dataset)

    return train


def dataset_size(dataset: Any, where: str) -> int:
    """``len(dataset)``, or a ConfigError saying why it is not a usable Dataset."""
    from gpubench.config import ConfigError

    try:
        n = len(dataset)
    except TypeError:
        raise ConfigError(
            f"{where}: make_dataset must return a torch Dataset with a length, got "
            f"{type(dataset).__name__}"
        ) from None
    if n <= 0:
        raise ConfigError(f"{where}: make_dataset returned no samples")
    return int(n)
