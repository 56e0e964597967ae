"""Flower apps as cases (--case flower:...): every mode runs the user's own ClientApp."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from gpubench.config import ConfigError, RunConfig, SampleSizes, TrainConfig
from gpubench.run.harness import compare
from tests.conftest import ROOT, run_config

pytest.importorskip("flwr")

from gpubench.cases.flower_app import (  # noqa: E402
    FLOWER_MISSING,
    parse_app_spec,
    parse_flower_config,
    with_app_options,
)

EXAMPLE = ROOT / "examples" / "flower-quickstart"
APPS = Path(__file__).resolve().parent / "flower_apps"
RUN_CONFIG = "batch-size=8 local-epochs=1 dataset-size=160"
QUICKSTART = with_app_options(
    f"flower:{EXAMPLE / 'app.py'}:app", 4, RUN_CONFIG, "lr=0.01", f"{EXAMPLE / 'task.py'}:Net"
)


def config(case: str, modes: tuple[str, ...], **kw) -> RunConfig:
    return run_config(**{"case": case, "modes": modes, "clients": 4,
                         "train": TrainConfig(samples=SampleSizes(32, 32), seed=7), **kw})


def app(file: str, name: str, run_config: str | None = None, **kw) -> str:
    return with_app_options(f"flower:{APPS / file}:{name}", 4, run_config, **kw)


def phases_add_up(results) -> bool:
    return all(
        sum(c.phases.values()) == pytest.approx(c.end_s - c.start_s, rel=0.05)
        for m in results.modes for r in m.rounds for c in r.clients
    )


# --- the spec and Flower's config syntax -------------------------------------------------


def test_the_spec_carries_the_options_every_worker_needs():
    spec = with_app_options("flower:a/app.py:app", 6, "batch-size=32 name='x'", "lr=0.1", "m:Net", 5)
    parsed = parse_app_spec(spec)
    assert (parsed.target, parsed.name, parsed.num_partitions) == ("a/app.py", "app", 6)
    assert parsed.run_config == "batch-size=32 name='x'" and parsed.train_config == "lr=0.1"
    assert parsed.initial_model == "m:Net" and parsed.client_timeout == 5
    assert parse_app_spec(str(parsed)) == parsed
    # The flags override what the spec says; the run's clients always win.
    again = parse_app_spec(with_app_options(spec, 3, None, "lr=0.5"))
    assert again.num_partitions == 3 and again.train_config == "lr=0.5"
    assert again.run_config == parsed.run_config


def test_values_are_typed_as_flower_types_them():
    assert parse_flower_config("batch-size=32 lr=0.01 name='cifar' fast=true", "--run-config") == {
        "batch-size": 32, "lr": 0.01, "name": "cifar", "fast": True,
    }
    with pytest.raises(ConfigError, match="--run-config"):
        parse_flower_config("batch-size=32 name=cifar", "--run-config")


@pytest.mark.parametrize("spec, message", [
    ("flower:app.py", "flower:path/to/app.py:NAME"),
    ("flower:a.py:app;speed=3", "unknown option 'speed=3'"),
    ("flower:a.py:app;client-timeout=-1", "client-timeout must be a number > 0"),
])
def test_bad_specs_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_app_spec(spec)


def test_flower_flags_need_a_flower_case():
    with pytest.raises(ConfigError, match="--run-config applies to a Flower app case"):
        with_app_options("cnn", 4, "batch-size=3")
    assert with_app_options("cnn", 4) == "cnn"


def test_a_message_api_app_needs_its_initial_model():
    from gpubench.cases import load_case

    with pytest.raises(ConfigError, match="give --initial-model"):
        load_case(with_app_options(f"flower:{EXAMPLE / 'app.py'}:app", 4, RUN_CONFIG))


def test_without_flwr_a_flower_case_exits_2_with_the_install_hint(monkeypatch, capsys):
    from gpubench.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "flwr" else real(name, *a)
    )
    code = main(["compare", "--case", "flower:nowhere/app.py:app", "--clients", "2", "-q"])
    assert code == 2 and FLOWER_MISSING in capsys.readouterr().err


# --- the trainer on one client --------------------------------------------------------------


def test_one_quickstart_client_through_the_trainer():
    from gpubench.cases import load_case
    from gpubench.train.apptrainer import OwnTrainer
    from gpubench.train.fl import initial_global_state

    case = load_case(QUICKSTART)
    cfg = TrainConfig(seed=7)
    trainer = OwnTrainer(case, cfg, "cpu", "cpu:0", 0, {})
    g = initial_global_state(case, cfg.seed)
    trainer.sink.begin(g)
    fps = torch.full((4, 16), float("nan"), dtype=torch.float64)
    t = trainer.run(3, fps)
    assert t.samples == 32  # 80% of its 40 of 160 images: the app's num-examples
    assert trainer.sink.weight == 32 and torch.isfinite(fps[3]).all()
    assert t.phases["data"] > 0 and t.phases["compute"] > 0
    assert sum(t.phases.values()) == pytest.approx(t.end_s - t.start_s, rel=1e-6)
    trained = trainer.trained()
    assert trained.shape == g.shape and not torch.equal(trained, g)


# --- under the modes ----------------------------------------------------------------------------


def test_quickstart_serial_and_threaded_with_the_global_rng_finding():
    results = compare(config(QUICKSTART, ("serial", "threaded")))
    serial, threaded = results.mode("serial"), results.mode("threaded")
    assert serial.status == "ok" and threaded.status == "ok", (serial.error, threaded.error)
    assert list(results.config["samples"]) == [32, 32, 32, 32]
    # DataLoader(shuffle=True) without a generator: the threads share torch's global RNG.
    assert threaded.reproducible is False and "global RNG" in threaded.not_reproducible_reason
    assert phases_add_up(results)


def test_a_numpy_client_fn_agrees_with_serial_under_threads():
    # Its loader has a generator of its own; the global model is a client's get_parameters.
    results = compare(config(app("numpy_app.py", "numpy_client_fn", "local-epochs=2",
                                 train_config="lr=0.1"), ("serial", "threaded")))
    threaded = results.mode("threaded")
    assert threaded.status == "ok" and threaded.same_result is True, threaded.error
    assert list(results.config["samples"]) == [40, 48, 56, 64]


@pytest.mark.parametrize("problem, message", [
    ("raises", "client 2 on cpu:0: the app raised RuntimeError: the data server is unreachable"),
    ("shapes", "client 2 on cpu:0: the app returned array 0 of shape (3, 6), the global model's is (2, 6)"),
    ("examples", "client 2 on cpu:0: the app replied with no 'num-examples'"),
    pytest.param("hangs", "client 2 on cpu:0: the app did not return within 4 s",
                 marks=pytest.mark.slow, id="hangs"),  # waits out its 4 s timeout
])
def test_a_broken_client_fails_its_mode_naming_the_client(problem, message):
    case = app("broken_apps.py", problem, initial_model=f"{APPS / 'broken_apps.py'}:Net",
               client_timeout=4 if problem == "hangs" else None)
    results = compare(config(case, ("serial",)))
    serial = results.mode("serial")
    assert serial.status == "failed" and message in serial.error


@pytest.mark.slow
@pytest.mark.parametrize("file, name, run_config, initial", [
    ("numpy_app.py", "app", None, None),  # a ClientApp(client_fn=...): the legacy messages
    ("numpy_app.py", "client_fn", None, None),  # a client_fn returning a Client
    ("tutorial_app.py", "app", "batch-size=8 local-epochs=1 learning-rate=0.01", "SmallNet"),
])
def test_other_apps_under_the_default_modes(file, name, run_config, initial):
    case = app(file, name, run_config,
               initial_model=f"{APPS / file}:{initial}" if initial else None)
    # multi-gpu runs the app in a worker process (multiprocess would too); one slot, one worker
    results = compare(config(case, ("serial", "threaded", "multi-gpu"), devices="cpu:1"))
    for mode in results.modes[1:]:
        assert mode.status == "ok", (mode.name, mode.error)
        assert mode.same_result is True or mode.reproducible is False, mode.name
    assert results.mode("multi-gpu").same_result is True


@pytest.mark.slow
def test_a_broken_client_fails_the_process_modes_too():
    case = app("broken_apps.py", "hangs", initial_model=f"{APPS / 'broken_apps.py'}:Net",
               client_timeout=4)
    results = compare(config(case, ("multi-gpu",), devices="cpu:1"))
    mode = results.mode("multi-gpu")
    # Client 2 trains on cpu:0 (the one worker); the worker is stopped when the mode closes.
    assert mode.status == "failed"
    assert "client 2 on cpu:0: the app did not return within 4 s" in mode.error


# The quickstart one-liner under multi-gpu and flower, through flwr run:
# tests/test_flower_run.py::test_the_quickstart_through_flwr_run_without_run_simulation.


# --- an app that picks its own GPU ------------------------------------------------------------


def test_the_check_before_a_run_trains_an_app_on_the_cpu_even_with_a_gpu(monkeypatch):
    import torch

    from gpubench.train import apptrainer

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    seen = []

    def probe(*args):
        seen.append(torch.cuda.is_available())  # what the app's "cuda:0 if available" sees
        return {}, None

    monkeypatch.setattr(apptrainer, "_probe", probe)
    apptrainer.probe_case(None, None, None, {0: None}, True)  # type: ignore[arg-type]
    assert seen == [False] and torch.cuda.is_available() is True


def test_in_process_app_training_is_bound_to_the_modes_gpu_and_a_fixed_cuda0_is_refused(
    monkeypatch,
):
    import contextlib

    import torch

    from gpubench.cases.flower_app import AppError
    from gpubench.train.apptrainer import bound_to

    counts = [0, 0]
    current = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "memory_stats",
                        lambda i: {"allocation.all.allocated": counts[i]})

    @contextlib.contextmanager
    def device(index):
        current.append(index)
        yield

    monkeypatch.setattr(torch.cuda, "device", device)
    with bound_to("cuda:1"):  # the app takes torch.device("cuda"): the bound GPU
        counts[1] += 3
    assert current == [1]
    with pytest.raises(AppError, match=r"trained on cuda:0 while this mode runs on cuda:1"):
        with bound_to("cuda:1"):
            counts[0] += 1  # the template's "cuda:0"
    with bound_to("cpu"):  # CPU slots: nothing to bind
        counts[0] += 1
    assert current == [1, 1]


@pytest.mark.slow
@pytest.mark.ray
def test_a_client_fn_app_under_flower():
    # A client_fn returning a Client, run by flwr run's simulation inside gpubench's ClientApp.
    pytest.importorskip("ray")
    results = compare(config(app("numpy_app.py", "client_fn"), ("serial", "flower")))
    flower = results.mode("flower")
    assert flower.status == "ok" and flower.same_result is True, flower.error
    assert (flower.extra.engine or {}).get("engine") == "flwr run"
