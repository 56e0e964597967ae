"""User-style cases for tests: loaded by file path, as a user's own case would be."""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn import functional

from gpubench.cases import Case, synthetic_data


def tiny_model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))


def _slow_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    time.sleep(0.05)  # a client slow enough that a test can act in the middle of a round
    return functional.cross_entropy(logits, y)


slow_case = Case("slow", tiny_model, (16,), 4, "sleeps 50 ms per batch", loss=_slow_loss)


def _marked_data(seed, client, n, partition):
    x, y = synthetic_data((16,), 4, seed, client, n, partition)
    if client == 2:
        y = torch.full_like(y, 3)
    return x, y


def _picky_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if bool((y == 3).all()):
        raise ValueError("bad batch: every label is 3")
    return functional.cross_entropy(logits, y)


failing_case = Case(
    "failing", tiny_model, (16,), 4, "client 2 raises", make_data=_marked_data, loss=_picky_loss
)


def make_tiny_case() -> Case:
    return Case("tiny", tiny_model, (16,), 4, "a 200-parameter MLP")


class OpenMPWaitProbe:
    """A worker body that writes the worker's GOMP_SPINCOUNT (-1: unset) into its rows."""

    def __init__(self, setup, spec, torch_device):
        self.clients = spec.clients

    def run_round(self, global_state, updates):
        import os

        for c in self.clients:
            updates[c, 0] = float(os.environ.get("GOMP_SPINCOUNT", "-1"))
        return []


def make_openmp_wait_probe(setup, spec, torch_device):
    return OpenMPWaitProbe(setup, spec, torch_device)
