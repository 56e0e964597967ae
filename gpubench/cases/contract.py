"""The ``Case`` contract: a model builder, its per-client data and its loss.

A case may also bring its own training (``train``, ``make_dataset``) or be a Flower app
(``app``); such a case *trains itself*: gpubench's trainer for it
(:class:`gpubench.train.apptrainer.OwnTrainer`) calls the case's code for each client and times it
through the phases it can see.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpubench.cases.synthetic import synthetic_data
from gpubench.config import Partition, TrainConfig

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import Dataset

# The trainer of cases that train themselves, named rather than imported: it lives in the
# ``fl`` layer above this one (as pool workers name theirs, "module:function").
OWN_TRAINER = "gpubench.train.apptrainer:OwnTrainer"


def own_trainer(*args: Any) -> Any:
    """``make_trainer`` of a case that trains itself (see :data:`OWN_TRAINER`)."""
    module, _, name = OWN_TRAINER.partition(":")
    return getattr(importlib.import_module(module), name)(*args)


@dataclass(frozen=True)
class Case:
    """A model and its per-client data.

    ``make_data(seed, client, n, partition) -> (x, y)`` defaults to synthetic data shaped
    ``input_shape`` with ``num_classes`` labels; ``loss(logits, y)`` defaults to cross entropy.

    Training of the case's own:

    * ``make_dataset(seed, client, n, partition) -> torch.utils.data.Dataset``: the client's
      samples as a Dataset of ``(x, y)`` pairs; gpubench iterates it through a DataLoader
      (``batch_size``, shuffled by the client's own generator) and times waiting for batches.
    * ``train(model, loader_or_data, cfg, device) -> num_examples``: the client's whole local
      training (its loop, optimizer, scheduler, AMP, epochs) of ``model`` (already on
      ``device``, holding the round's global model) over the DataLoader (``make_dataset``)
      or the ``(x, y)`` tensors on ``device`` (``make_data``); it returns the number of
      examples it trained on, the client's FedAvg weight: its dataset's size. Without
      ``train``, a ``make_dataset`` case trains with SGD (``--lr``, ``--momentum``) over the
      loader.
    * ``app``: a Flower app (:mod:`gpubench.cases.flower_app`).
    """

    name: str
    build_model: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    num_classes: int
    description: str = ""
    make_data: Callable[[int, int, int, Partition], tuple[Any, Any]] | None = None
    loss: Callable[[Any, Any], Any] | None = None
    # A trainer of the case's own (e.g. a Flower app's client), built per worker by
    # ``gpubench.train.fl.make_trainer`` in place of the built-in one; same arguments and protocol
    # as ``gpubench.train.fl.ClientTrainer``.
    make_trainer: Callable[..., Any] | None = None
    train: Callable[[nn.Module, Any, TrainConfig, str], int] | None = None
    make_dataset: Callable[[int, int, int, Partition], Dataset[Any]] | None = None
    app: Any = None

    def __post_init__(self) -> None:
        if self.trains_itself and self.make_trainer is None:
            object.__setattr__(self, "make_trainer", own_trainer)

    @property
    def trains_itself(self) -> bool:
        """The case's own code trains each client (``train``, ``make_dataset`` or ``app``)."""
        return self.train is not None or self.make_dataset is not None or self.app is not None

    def data(self, seed: int, client: int, n: int, partition: Partition) -> tuple[Any, Any]:
        if self.make_data is not None:
            return self.make_data(seed, client, n, partition)
        if self.make_dataset is not None or self.app is not None:
            # Its trainer builds the client's data itself: nothing to hand it as tensors.
            import torch

            return torch.zeros(0), torch.zeros(0, dtype=torch.long)
        return synthetic_data(self.input_shape, self.num_classes, seed, client, n, partition)

    def dataset(self, seed: int, client: int, n: int, partition: Partition) -> Dataset[Any]:
        """The client's samples as a Dataset (``make_dataset``, else ``(x, y)`` pairs)."""
        if self.make_dataset is not None:
            return self.make_dataset(seed, client, n, partition)
        from torch.utils.data import TensorDataset

        return TensorDataset(*self.data(seed, client, n, partition))

    def loss_fn(self) -> Callable[[Any, Any], Any]:
        if self.loss is not None:
            return self.loss
        from torch.nn import functional

        return functional.cross_entropy


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
