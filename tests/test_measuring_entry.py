"""One measuring entry: the command line, the API, the FAQ's plan and sweeps all measure
through ``gpubench.run.harness.measure``, whose ``prepare`` does every check once and whose
monitor decision is the config's."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import gpubench
from gpubench.config import ConfigError, PipelineConfig, RunConfig, TrainConfig
from gpubench.run import faq_plan, harness
from gpubench.run.sweep import run_sweep
from tests.test_accuracy import fake_results


@pytest.fixture
def measured(monkeypatch) -> list[tuple[RunConfig, Any]]:
    """Every call of the one entry, answered without measuring."""
    calls: list[tuple[RunConfig, Any]] = []

    def fake_measure(config: RunConfig, *, progress=None, command="", prepared=None):
        calls.append((config, prepared))
        serial = fake_results(config.train.batch_size, 0.5)
        return replace(serial, config=replace(serial.config, modes=tuple(config.modes)))

    monkeypatch.setattr(harness, "measure", fake_measure)
    monkeypatch.setattr(harness, "prepare", lambda config, check_fit=True: ("prepared", config))
    return calls


def test_the_api_and_a_sweep_measure_through_the_one_entry(measured, tmp_path: Path) -> None:
    config = RunConfig(case="mlp", devices="cpu:1", modes=("serial",))
    prepared: Any = ("prepared", config)
    gpubench.compare(config, counterfactual=False, prepared=prepared)
    points = [(b, replace(config, train=TrainConfig(batch_size=b))) for b in (16, 32)]
    run_sweep("batch_size", points, tmp_path)  # no hook given: the default entry
    assert [(c.train.batch_size, p is prepared) for c, p in measured] == [
        (config.train.batch_size, True), (16, False), (32, False)]


def test_the_faq_plan_measures_every_run_through_the_one_entry(measured, tmp_path: Path) -> None:
    plan = replace(faq_plan.QUICK, accuracy_rounds=0)  # the accuracy pass trains: not here
    faq_plan.run_plan(plan, "mlp", "cpu:2", tmp_path)
    modes = [c.modes for c, _ in measured]
    # the comparison, the memory run, then serial at each batch of the sweep
    assert modes[0] == faq_plan.COMPARISON_MODES and modes[1] == faq_plan.MEMORY_MODES
    assert [c.train.batch_size for c, _ in measured[2:]] == list(plan.batches)
    assert all(c.sample_interval_s == plan.sample_interval_s for c, _ in measured)


def test_prepare_checks_what_the_pipeline_needs_for_every_entry() -> None:
    config = RunConfig(case="mlp", devices="cpu:1", modes=("serial",),
                       train=TrainConfig(pipeline=PipelineConfig(amp="fp16")))
    with pytest.raises(ConfigError, match="--amp fp16 is not applicable on CPU slots"):
        harness.measure(config)  # before: only the API's and the command line's checks had it


def test_the_monitor_is_decided_once_from_the_config() -> None:
    from gpubench.monitor import create_sampler

    assert harness.monitor_for(RunConfig(sample_interval_s=None)) is None
    assert harness.monitor_for(RunConfig(sample_interval_s=0)) is None
    assert harness.monitor_for(RunConfig(sample_interval_s=0.1)) is create_sampler
