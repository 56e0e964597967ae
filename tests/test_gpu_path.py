"""The CUDA path without a GPU: per-client synchronisation and CUDA-event phases, memory that
is each mode's own, recovery after an out-of-memory error, exclusive-process GPUs, and
vectorized's chunk under memory pressure. Fakes stand in for the GPU: a fake event recorder,
patched ``torch.cuda`` functions, a fake ``Device(kind="cuda")`` and the fake NVML library."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from gpubench.cases import load_case
from gpubench.config import TrainConfig
from gpubench.train import fl
from gpubench.train.fl import ClientTrainer, flatten_state, state_tensors
from gpubench.train.pipeline import PhaseClock
from gpubench.train.updates import FINGERPRINT_SIZE

# --- one synchronise per client, CUDA events for the phases ----------------------------------


class FakeEvent:
    """A CUDA event: its time is the device clock of the fake when it was recorded."""

    def __init__(self, clock: list[float], reads: list[int]) -> None:
        self.at = clock[0]
        self.reads = reads

    def elapsed_time(self, later: FakeEvent) -> float:
        self.reads[0] += 1
        return (later.at - self.at) * 1000.0


def test_the_clock_splits_copy_and_compute_as_the_device_spent_them() -> None:
    device_clock = [0.0]
    reads = [0]
    syncs = []
    clock = PhaseClock(lambda: syncs.append(1), lambda: FakeEvent(device_clock, reads))
    for _ in range(3):  # the host runs ahead: each tick sees the device's clock move later
        clock.tick("data")
        device_clock[0] += 1.0  # the copy, 1 s of the device's
        clock.tick("copy")
        device_clock[0] += 3.0  # forward, backward and step, 3 s
        clock.tick("compute")
    assert reads == [0]  # nothing is read before the device is synchronised
    clock.tick("compute", synced=True)
    assert len(syncs) == 1
    host = clock.phases["copy"] + clock.phases["compute"]
    assert clock.phases["copy"] == pytest.approx(host / 4)
    assert clock.phases["compute"] == pytest.approx(3 * host / 4)
    assert sum(clock.phases.values()) == pytest.approx(clock._last - clock.start)


def test_a_cuda_client_synchronises_once_at_each_end_not_every_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """O(1) device-wide waits per client, whatever its steps: the CUDA trainer's default."""
    reads = [0]
    recorded = []

    def recorder(torch_device: str) -> Any:
        def record() -> FakeEvent:
            recorded.append(1)
            return FakeEvent([float(len(recorded))], reads)
        return record

    monkeypatch.setattr(fl, "event_recorder", recorder)  # what a CUDA device gives the trainer
    case = load_case("mlp")
    cfg = TrainConfig(batch_size=8, seed=1)
    data = {0: case.data(1, 0, 96, cfg.partition)}  # 12 steps
    trainer = ClientTrainer(case, cfg, "cpu", "cuda:0", 0, data)
    syncs = []
    trainer.synchronize = lambda: syncs.append(1)
    trainer.sink.begin(flatten_state(state_tensors(case.build_model())))
    fps = torch.full((1, FINGERPRINT_SIZE), float("nan"), dtype=torch.float64)
    timing = trainer.run(0, fps)
    assert len(syncs) <= 6, f"{len(syncs)} synchronise calls for one client of 12 steps"
    assert len(recorded) >= 12  # each step's phases are marked by events instead
    assert timing.phases["compute"] > 0
    assert sum(timing.phases.values()) == pytest.approx(timing.end_s - timing.start_s)
