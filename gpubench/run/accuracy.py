"""Held-out accuracy after R rounds of FedAvg that *progress*.

``compare`` measures the same round again and again from one global model: that is what a
timing needs, and it says nothing about what the model learns. Here each round starts from
the previous round's aggregate, as real federated training does, and after every round the
aggregate is scored on a held-out set, so that "a bigger batch makes a round k times faster"
can be read next to "k times fewer local steps" and the accuracy those steps reach.

Clients train one after another in this process on the run's first device (a GPU, or CPU
slot 0 with its cores and thread count), with the same functions every mode uses
(:func:`gpubench.train.fl.local_train`, :class:`gpubench.train.updates.UpdateSink`). The held-out set is drawn
like one more client's data (client index ``clients``, iid), so it follows the task every
client learns and is never trained on. Each round shuffles with its own seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from gpubench.cases import load_case
from gpubench.cases.seeds import derive_seed
from gpubench.config import Partition, RunConfig
from gpubench.machine.cuda import synchronize
from gpubench.machine.devices import resolve_devices, torch_device_in_process
from gpubench.machine.isolation import pinned_thread
from gpubench.train.fl import (
    build_datasets,
    flatten_state,
    initial_global_state,
    load_state,
    local_train,
    sizes_for,
    state_tensors,
)
from gpubench.train.updates import UpdateSink

DEFAULT_HELD_OUT = 1024
_EVAL_BATCH = 512


@dataclass(frozen=True)
class AccuracyRun:
    """Accuracy on the held-out set before training and after each progressing round."""

    batch_size: int
    rounds: int
    initial_accuracy: float
    accuracy: tuple[float, ...]  # after round 1, 2, ..., R
    round_s: tuple[float, ...]  # wall time of each round (local training of every client + FedAvg)
    local_steps: float  # SGD steps per client per round, mean over clients
    held_out: int
    device: str
    target: float | None = None

    @property
    def final(self) -> float:
        return self.accuracy[-1] if self.accuracy else self.initial_accuracy

    @property
    def rounds_to_target(self) -> int | None:
        """The first round after which accuracy reached ``target``; None if it never did."""
        if self.target is None:
            return None
        for i, acc in enumerate(self.accuracy, 1):
            if acc >= self.target:
                return i
        return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["accuracy"] = list(self.accuracy)
        d["round_s"] = list(self.round_s)
        d["final"] = self.final
        d["rounds_to_target"] = self.rounds_to_target
        return d


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of ``x`` the model classifies as ``y`` (arg-max of its output)."""
    model.eval()
    correct = 0
    for start in range(0, int(x.shape[0]), _EVAL_BATCH):
        out = model(x[start : start + _EVAL_BATCH])
        correct += int((out.argmax(dim=1) == y[start : start + _EVAL_BATCH]).sum().item())
    return correct / max(int(x.shape[0]), 1)


def local_steps(sizes: Sequence[int], batch_size: int, epochs: int) -> float:
    return sum(math.ceil(n / batch_size) for n in sizes) * epochs / max(len(sizes), 1)


def run_accuracy(
    config: RunConfig,
    rounds: int,
    *,
    target: float | None = None,
    held_out: int = DEFAULT_HELD_OUT,
) -> AccuracyRun:
    """Train ``rounds`` progressing FedAvg rounds serially and score each aggregate."""
    if rounds < 1:
        raise ValueError(f"accuracy rounds must be >= 1, got {rounds}")
    config.validate()
    device = resolve_devices(config.devices).devices[0]
    torch_device = torch_device_in_process(device)
    case = load_case(config.case)
    cfg = config.train
    sizes = sizes_for(cfg, config.clients)
    threads_before = torch.get_num_threads()
    with pinned_thread(device):
        if not device.is_cuda:
            torch.set_num_threads(len(device.cores) or threads_before)
        try:
            data = build_datasets(case, cfg, range(config.clients), sizes, torch_device)
            x_test, y_test = case.data(cfg.seed, config.clients, held_out, Partition())
            x_test, y_test = x_test.to(torch_device), y_test.to(torch_device)
            model = case.build_model().to(torch_device)
            tensors = state_tensors(model)
            loss_fn = case.loss_fn()
            global_state = initial_global_state(case, cfg.seed)
            sink = UpdateSink(int(global_state.numel()), cfg.seed, torch_device)
            weights = [float(s) for s in sizes]
            load_state(tensors, global_state)
            initial = evaluate(model, x_test, y_test)
            accuracy, times = [], []
            for r in range(rounds):
                # Every round shuffles anew, as a client's DataLoader would.
                round_cfg = replace(cfg, seed=derive_seed(cfg.seed, "accuracy-round", r))
                synchronize(torch_device)
                t0 = time.perf_counter()
                sink.begin(global_state)
                for c in range(config.clients):
                    load_state(tensors, sink.global_state)
                    x, y = data[c]
                    local_train(model, x, y, round_cfg, c, loss_fn)
                    flatten_state(tensors, sink.state_view())
                    sink.take()
                    sink.fold(weights[c])
                update = sink.finish() / sum(weights)
                global_state = (global_state.to(torch.float64) + update).to(torch.float32)
                synchronize(torch_device)
                times.append(time.perf_counter() - t0)
                load_state(tensors, global_state)
                accuracy.append(evaluate(model, x_test, y_test))
        finally:
            torch.set_num_threads(threads_before)
    return AccuracyRun(
        batch_size=cfg.batch_size,
        rounds=rounds,
        initial_accuracy=initial,
        accuracy=tuple(accuracy),
        round_s=tuple(times),
        local_steps=local_steps(sizes, cfg.batch_size, cfg.local_epochs),
        held_out=held_out,
        device=device.id,
        target=target,
    )
