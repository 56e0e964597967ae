"""The ``Case`` contract: a model builder, its per-client data and its loss."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpubench.cases.synthetic import synthetic_data
from gpubench.config import Partition

if TYPE_CHECKING:
    from torch import nn


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
    # A trainer of the case's own (e.g. a Flower app's client), built per worker by
    # ``gpubench.fl.make_trainer`` in place of the built-in one; same arguments and protocol
    # as ``gpubench.fl.ClientTrainer``.
    make_trainer: Callable[..., Any] | None = None

    def data(self, seed: int, client: int, n: int, partition: Partition) -> tuple[Any, Any]:
        if self.make_data is not None:
            return self.make_data(seed, client, n, partition)
        return synthetic_data(self.input_shape, self.num_classes, seed, client, n, partition)

    def loss_fn(self) -> Callable[[Any, Any], Any]:
        if self.loss is not None:
            return self.loss
        from torch.nn import functional

        return functional.cross_entropy


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
