"""User-style cases for tests: loaded by file path, as a user's own case would be."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

from gpubench.cases import Case, synthetic_data


def tiny_model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))


def _slow_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # A client slow enough that a test can act in the middle of a round; the test learns
    # that training has begun in this process from a file named after its pid.
    marks = os.environ.get("GPUBENCH_TEST_MARKS")
    if marks:
        Path(marks, str(os.getpid())).touch()
    time.sleep(0.05)
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
    """A worker body that writes the worker's GOMP_SPINCOUNT (-1: unset) into its clients'
    fingerprint rows."""

    def __init__(self, setup, spec, torch_device):
        self.clients = spec.clients

    def begin(self, global_state, partial):
        pass

    def train(self, clients, fingerprints):
        import os

        for c in self.clients:
            fingerprints[c, 0] = float(os.environ.get("GOMP_SPINCOUNT", "-1"))
        return []

    def finish(self):
        return 0.0


def make_openmp_wait_probe(setup, spec, torch_device):
    return OpenMPWaitProbe(setup, spec, torch_device)


def dropout_model() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 4)
    )


dropout_case = Case("dropout", dropout_model, (16,), 4, "an MLP with nn.Dropout(0.5)")


def _short_data(seed, client, n, partition):
    x, y = synthetic_data((16,), 4, seed, client, n, partition)
    return (x, y[:-1]) if client == 1 else (x, y)


mismatched_case = Case(
    "mismatched", tiny_model, (16,), 4, "client 1's y is one short", make_data=_short_data
)


def _wrong_shape(seed, client, n, partition):
    return synthetic_data((8,), 4, seed, client, n, partition)


wrong_shape_case = Case("wrong-shape", tiny_model, (16,), 4, "8 features", make_data=_wrong_shape)


def _empty(seed, client, n, partition):
    x, y = synthetic_data((16,), 4, seed, client, n, partition)
    return (x[:0], y[:0]) if client == 2 else (x, y)


empty_case = Case("empty", tiny_model, (16,), 4, "client 2 has no samples", make_data=_empty)


def _fewer(seed, client, n, partition):
    x, y = synthetic_data((16,), 4, seed, client, n, partition)
    return (x[: n // 2], y[: n // 2]) if client % 2 else (x, y)


fewer_case = Case("fewer", tiny_model, (16,), 4, "odd clients have half", make_data=_fewer)


SEEN_AFFINITIES: list[dict[int, frozenset[int]]] = []


def _affinity_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Records, while a client trains, the CPU affinity of every thread of this process."""
    seen = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            seen[int(tid)] = frozenset(os.sched_getaffinity(int(tid)))
        except OSError:  # the thread ended meanwhile
            pass
    SEEN_AFFINITIES.append(seen)
    return functional.cross_entropy(logits, y)


affinity_case = Case("affinity", tiny_model, (16,), 4, "records thread affinities",
                     loss=_affinity_loss)
