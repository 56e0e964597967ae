"""The flower mode: Flower's simulation engine on a real local Ray, against serial."""

from __future__ import annotations

import importlib.util
import os
import signal
import threading
import time
from dataclasses import replace

import pytest

from gpubench.config import RunConfig, SampleSizes, TrainConfig
from gpubench.modes.flower import FLOWER_MISSING
from gpubench.run.harness import compare
from tests.conftest import CASES, wait_for_training
from tests.ray_helpers import named_descendants, new_ray_processes, ray_processes


def small(**kw) -> RunConfig:
    train = TrainConfig(batch_size=32, samples=SampleSizes(48, 80), seed=5)
    base = RunConfig(
        case="mlp", clients=4, train=train, devices="cpu:2", modes=("serial", "flower"),
        warmup=1, rounds=2, sample_interval_s=None,
    )
    return replace(base, **kw)


@pytest.fixture
def flower_installed():
    pytest.importorskip("flwr")
    pytest.importorskip("ray")
    before = {p.pid for p in ray_processes()}
    yield
    left = new_ray_processes(before)
    assert not left, f"Ray processes outlived the test: {left}"


def test_without_flwr_the_mode_fails_with_an_install_hint(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "flwr" else real(name, *a)
    )
    results = compare(small(warmup=0, rounds=1))
    flower, serial = results.mode("flower"), results.mode("serial")
    assert flower is not None and serial is not None
    assert flower.status == "failed" and flower.error == FLOWER_MISSING
    assert serial.status == "ok"


@pytest.mark.slow
def test_flowers_fedavg_matches_serial(flower_installed):
    # Unequal client sizes: Flower weights by num-examples, as gpubench's FedAvg does.
    results = compare(small())
    flower = results.mode("flower")
    assert flower is not None and flower.status == "ok", flower and flower.error
    assert flower.same_result is True and (flower.max_abs_diff_vs_serial or 0) <= 1e-5
    assert flower.cold_start_s is not None and flower.cold_start_s > 0
    assert len(flower.warmup_times_s) == 1 and len(flower.round_times_s) == 2
    assert flower.workers == 2  # two one-CPU actors on two one-core slots
    sizes = list(results.config["samples"])
    for r in flower.rounds:
        assert sorted(c.client for c in r.clients) == list(range(4))
        assert [c.samples for c in sorted(r.clients, key=lambda c: c.client)] == sizes
        assert all(0 <= c.start_s <= c.end_s <= r.time_s for c in r.clients)
    assert {w.worker for w in flower.worker_memory} == {0, 1}


@pytest.mark.slow
def test_a_killed_flower_actor_fails_the_mode_within_seconds(flower_installed, tmp_path,
                                                             monkeypatch):
    config = small(
        case=f"{CASES}:slow_case", modes=("flower", "serial"), warmup=0, rounds=1,
        train=TrainConfig(batch_size=8, samples=SampleSizes(64, 64)),
    )
    monkeypatch.setenv("GPUBENCH_TEST_MARKS", str(tmp_path))
    seen: dict[str, float] = {}

    def kill_soon() -> None:
        victims = named_descendants("ray::ClientAppActor")
        assert victims, "no Flower actor to kill"
        # Kill an actor once it is training a client of the measured round.
        victim = wait_for_training(tmp_path, {v.pid for v in victims})
        os.kill(victim, signal.SIGKILL)
        seen["killed"] = time.monotonic()

    def progress(mode: str, phase: str, index: int, total: int) -> None:
        if mode == "flower" and phase == "round" and "thread" not in seen:
            seen["thread"] = 1.0
            threading.Thread(target=kill_soon, daemon=True).start()
        if mode == "flower" and phase == "failed":
            seen["failed"] = time.monotonic()

    results = compare(config, progress=progress)
    flower, serial = results.mode("flower"), results.mode("serial")
    assert flower is not None and serial is not None
    assert flower.status == "failed", flower.error
    assert "Flower client failed" in (flower.error or ""), flower.error
    assert seen["failed"] - seen["killed"] < 10
    assert serial.status == "ok"
