"""Cases with their own training: Case.train and Case.make_dataset, under the modes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from gpubench.config import ConfigError, RunConfig, SampleSizes, TrainConfig
from gpubench.run.harness import compare
from gpubench.run.prepare import prepare
from tests.conftest import run_config

CASES = Path(__file__).resolve().parent / "own_train_cases.py"
TRAIN = TrainConfig(batch_size=8, samples=SampleSizes(20, 36), seed=3, lr=0.01)


def config(name: str, modes: tuple[str, ...] = ("serial", "threaded"), **kw: Any) -> RunConfig:
    return run_config(case=f"{CASES}:{name}", clients=4, train=TRAIN, modes=modes, **kw)


def check_phases(results) -> None:
    for mode in results.modes:
        for rnd in mode.rounds:
            for c in rnd.clients:
                assert set(c.phases) == {"setup", "data", "compute", "write", "aggregate"}
                assert min(c.phases.values()) >= 0
                assert sum(c.phases.values()) == pytest.approx(c.end_s - c.start_s, rel=0.05)


def test_own_train_and_dataset_agree_with_serial_under_threads():
    results = compare(config("adam_case"))
    serial, threaded = results.mode("serial"), results.mode("threaded")
    assert serial.status == "ok" and threaded.status == "ok", (serial.error, threaded.error)
    assert threaded.same_result is True
    # FedAvg weights: the samples of each client's dataset.
    assert [c.samples for c in serial.rounds[0].clients] == list(results.config["samples"])
    assert len(set(results.config["samples"])) > 1
    check_phases(results)
    # Waiting for the loader's batches is seen as its own phase.
    assert all(c.phases["data"] > 0 for c in serial.rounds[0].clients)


def test_make_dataset_without_train_uses_sgd_over_the_loader():
    results = compare(config("dataset_case", ("serial",)))
    assert results.mode("serial").status == "ok"
    update = results.mode("serial").rounds[0].clients
    assert all(c.samples >= 20 for c in update)


def test_train_on_tensors_of_make_data():
    results = compare(config("tensor_case"))
    assert results.mode("threaded").same_result is True


def test_a_train_drawing_from_the_global_rng_is_not_reproducible_under_threads():
    prep = prepare(config("global_rng_case"))
    assert prep.draws_global_rng
    results = compare(config("global_rng_case"))
    threaded = results.mode("threaded")
    assert threaded.status == "ok" and threaded.reproducible is False
    assert threaded.same_result is None and "global RNG" in (threaded.not_reproducible_reason or "")


def test_train_must_return_its_datasets_size():
    with pytest.raises(ConfigError, match="client 0 on the parent: train returned 72 examples but the client has 36"):
        prepare(config("double_count_case"))


def test_make_dataset_must_return_a_dataset():
    with pytest.raises(ConfigError, match="client 0: make_dataset must return a torch Dataset"):
        prepare(config("not_a_dataset_case"))


@pytest.mark.slow
def test_own_train_under_the_process_modes():
    # multiprocess's workers are multi-gpu's, placed elsewhere: one of the two suffices. One
    # slot: its one worker trains every client, one after another, with Adam's state.
    results = compare(config("adam_case", ("serial", "multi-gpu"), devices="cpu:1"))
    for name in ("multi-gpu",):
        mode = results.mode(name)
        assert mode.status == "ok" and mode.same_result is True, (name, mode.error)
    check_phases(results)


def test_trainer_writes_the_trained_state_in_state_dict_order():
    from gpubench.cases import load_case
    from gpubench.train.apptrainer import OwnTrainer
    from gpubench.train.fl import initial_global_state

    case = load_case(f"{CASES}:adam_case")
    trainer = OwnTrainer(case, TRAIN, "cpu", "cpu:0", 0, {1: (torch.zeros(0), torch.zeros(0))})
    g = initial_global_state(case, TRAIN.seed)
    trainer.sink.begin(g)
    fps = torch.full((4, 16), float("nan"), dtype=torch.float64)
    t = trainer.run(1, fps)
    assert torch.isfinite(fps[1]).all() and not torch.isfinite(fps[0]).any()
    assert t.samples == len(trainer.data[1]) and trainer.sink.weight == t.samples
    # The update the sink took is the trained state minus the global model.
    assert torch.allclose(trainer.sink.state_view() + g, trainer.trained(), atol=1e-6)
