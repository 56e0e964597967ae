"""Every field of the run's configuration has a type and a range, checked in one place: a
value of the wrong type is a ``ConfigError`` naming the field when the config is made, one out
of its range when it is validated (before anything runs, from the library as from the command
line); the plain forms a user writes (``samples=512``, ``"256..1024"``, ``"dirichlet:0.5"``,
``modes="serial,threaded"``) stand for the typed values."""

from __future__ import annotations

import dataclasses
import math

import pytest

import gpubench
from gpubench.config import (
    ConfigError,
    Partition,
    PipelineConfig,
    RunConfig,
    SampleSizes,
    TrainConfig,
)
from tests.conftest import cli_in_process

# A value of the wrong type for every field of every config class.
WRONG_TYPE = {
    PipelineConfig: {
        "data": 1, "pin_memory": "yes", "loader": None, "loader_workers": "2",
        "persistent_workers": 1, "loader_start": 0, "augment": True, "client_setup": 2,
        "optimizer": ["sgd"], "amp": False, "torch_threads": 2.0, "sync_loss": "true",
        "dataset": 10, "preset": None,
    },
    TrainConfig: {
        "batch_size": "64", "local_epochs": 1.0, "samples": 2.5, "lr": "fast",
        "momentum": None, "partition": 0.5, "seed": "0", "pipeline": {"data": "host"},
        "data_budget": "1G",
    },
    RunConfig: {
        "case": 3, "clients": "10", "train": {"batch_size": 8}, "devices": 2, "assign": None,
        "modes": 5, "workers": 2.5, "workers_per_device": True, "warmup": "1", "rounds": None,
        "tolerance": "small", "timeout_s": "60", "interleave": "no", "sample_interval_s": "0.1",
        "mps": True, "profile_ops": "yes", "options": [("ray_address", "auto")],
    },
}

OUT_OF_RANGE = [
    (PipelineConfig, "loader_workers", -1), (PipelineConfig, "torch_threads", 0),
    (PipelineConfig, "optimizer", "lion"), (TrainConfig, "batch_size", 0),
    (TrainConfig, "local_epochs", 0), (TrainConfig, "samples", SampleSizes(0, 4)),
    (TrainConfig, "samples", SampleSizes(9, 3)), (TrainConfig, "lr", 0.0),
    (TrainConfig, "lr", math.nan), (TrainConfig, "momentum", 1.0),
    (TrainConfig, "partition", Partition("dirichlet", -1.0)), (TrainConfig, "data_budget", -1),
    (RunConfig, "case", " "), (RunConfig, "clients", 0), (RunConfig, "assign", "random"),
    (RunConfig, "workers", 0), (RunConfig, "workers_per_device", 0), (RunConfig, "warmup", -1),
    (RunConfig, "rounds", 0), (RunConfig, "tolerance", -0.1), (RunConfig, "timeout_s", 0),
    (RunConfig, "timeout_s", math.inf), (RunConfig, "sample_interval_s", 100.0),
    (RunConfig, "mps", "maybe"),
]  # fmt: skip

BAD_OPTIONS = [
    ({"gpus_per_worker": -1}, "--gpus-per-worker must be >= 0"),
    ({"gpus_per_worker": 1.5}, "a whole number above 1"),
    ({"gpus_per_worker": math.inf}, "--gpus-per-worker must be >= 0"),
    ({"cpus_per_worker": -0.5}, "--cpus-per-worker must be >= 0"),
    ({"vectorize_chunk": 0}, "--vectorize-chunk must be >= 1"),
]


def names_field(message: str, field: str) -> bool:
    """The message names the field, as the library spells it or as the command line does."""
    return field in message or f"--{field.replace('_', '-')}" in message


def test_every_field_of_every_config_is_covered():
    for cls, wrong in WRONG_TYPE.items():
        assert set(wrong) == {f.name for f in dataclasses.fields(cls)}, cls.__name__


@pytest.mark.parametrize(("cls", "field", "value"), [
    pytest.param(cls, field, value, id=f"{cls.__name__}.{field}")
    for cls, wrong in WRONG_TYPE.items() for field, value in wrong.items()
])
def test_a_value_of_the_wrong_type_is_refused_when_the_config_is_made(cls, field, value):
    with pytest.raises(ConfigError) as caught:
        cls(**{field: value})
    assert names_field(str(caught.value), field), caught.value
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize(("cls", "field", "value"), [
    pytest.param(cls, field, value, id=f"{cls.__name__}.{field}={value!r}")
    for cls, field, value in OUT_OF_RANGE
])
def test_a_value_out_of_range_is_refused_by_validation(cls, field, value):
    config = cls(**{field: value})
    with pytest.raises(ConfigError) as caught:
        config.validate()
    assert names_field(str(caught.value), field), caught.value
    run = RunConfig(train=TrainConfig(pipeline=config)) if cls is PipelineConfig else (
        RunConfig(train=config) if cls is TrainConfig else config)
    with pytest.raises(ConfigError):
        run.validate()  # a run validates all of its parts


def test_the_plain_forms_stand_for_the_typed_values():
    assert gpubench.TrainConfig(samples=512).samples == SampleSizes(512, 512)
    assert TrainConfig(samples="256..1024").samples == SampleSizes(256, 1024)
    assert TrainConfig(partition="dirichlet:0.5").partition == Partition("dirichlet", 0.5)
    assert RunConfig(modes="serial, threaded").modes == ("serial", "threaded")
    assert RunConfig(modes=["serial"]).modes == ("serial",)
    RunConfig(train=TrainConfig(samples=64, partition="iid"), modes="serial").validate()


@pytest.mark.parametrize(("value", "message"), [
    ("lots", "--samples-per-client (samples) must be N or LOW..HIGH, got 'lots'"),
    (0, "--samples-per-client (samples) needs 1 <= LOW <= HIGH, got '0'"),
    ("9..3", "--samples-per-client (samples) needs 1 <= LOW <= HIGH"),
    (True, "--samples-per-client (samples) must be N, 'LOW..HIGH' or a SampleSizes, got True"),
])
def test_samples_in_a_plain_form_that_means_nothing_name_the_field(value, message):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(samples=value)
    assert message in str(caught.value)


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS, ids=[str(o) for o, _ in BAD_OPTIONS])
def test_bad_ray_and_flower_resources_are_refused_by_the_library(options, message):
    with pytest.raises(ConfigError, match=message):
        gpubench.compare(RunConfig(case="mlp", clients=2, devices="cpu:1", modes=("serial", "ray"),
                                   options=options))


@pytest.mark.parametrize("flag", ["--gpus-per-worker", "--cpus-per-worker"])
@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_bad_ray_and_flower_resources_exit_2_with_one_line(flag, value, tmp_path, monkeypatch):
    from gpubench import api

    def measured(*a, **k):
        raise AssertionError("measured before the options were checked")

    monkeypatch.setattr(api, "prepare_checked", measured)
    proc = cli_in_process("compare", "--case", "mlp", "--clients", "2", "--devices", "cpu:1",
                          "--modes", "serial,ray", "--quiet", "--out", str(tmp_path / "r.json"),
                          flag, value)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{flag} must be >= 0" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
