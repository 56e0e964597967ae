"""The ray mode on a real local Ray with two CPU slots: same result, failures, no leftovers."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

import pytest

from gpubench.commands.compare import add_run_arguments, config_from_args
from gpubench.config import SampleSizes, TrainConfig
from gpubench.machine.devices import cpu_slots
from gpubench.modes.base import ModeFailure, Plan
from gpubench.modes.ray_common import RAY_MISSING, worker_resources
from gpubench.run.harness import compare, open_mode
from tests.conftest import CASES
from tests.ray_helpers import named_descendants, new_ray_processes, ray_processes, small


@pytest.fixture
def ray_installed():
    pytest.importorskip("ray")
    before = {p.pid for p in ray_processes()}
    yield
    left = new_ray_processes(before)
    assert not left, f"Ray processes outlived the test: {left}"


# --- without Ray running ---------------------------------------------------------------------


def plan_for(options: dict, devices=None, workers_per_device: int = 1) -> Plan:
    config = small(options=options, workers_per_device=workers_per_device)
    return Plan(config, devices or cpu_slots(2), (64,) * 5, 10)


def test_worker_resources_default_to_the_slot_and_follow_the_options():
    slot = cpu_slots(2)[0]
    assert worker_resources(plan_for({}), slot).cpus == len(slot.cores)
    assert worker_resources(plan_for({}), slot).gpus == 0
    custom = worker_resources(plan_for({"cpus_per_worker": 0.5, "gpus_per_worker": 0}), slot)
    assert (custom.cpus, custom.gpus) == (0.5, 0.0)
    with pytest.raises(ModeFailure, match="--cpus-per-worker must be >= 0"):
        worker_resources(plan_for({"cpus_per_worker": -1}), slot)
    with pytest.raises(ModeFailure, match="whole number"):
        worker_resources(plan_for({"gpus_per_worker": 1.5}), slot)


def test_the_cli_puts_ray_options_into_the_config():
    p = argparse.ArgumentParser()
    add_run_arguments(p)
    args = p.parse_args(["--gpus-per-worker", "0.25", "--cpus-per-worker", "2",
                         "--ray-address", "auto", "--modes", "serial,ray"])
    options = config_from_args(args).options
    assert options["gpus_per_worker"] == 0.25
    assert options["cpus_per_worker"] == 2.0
    assert options["ray_address"] == "auto"


def test_without_ray_the_mode_fails_with_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    results = compare(small(rounds=1))
    ray, serial = results.mode("ray"), results.mode("serial")
    assert ray is not None and serial is not None
    assert ray.status == "failed" and ray.error == RAY_MISSING
    assert serial.status == "ok"


# --- on a real local Ray ---------------------------------------------------------------------


@pytest.mark.slow
def test_ray_computes_serials_result_on_two_slots(ray_installed):
    results = compare(small())
    ray = results.mode("ray")
    assert ray is not None and ray.status == "ok", ray and ray.error
    assert ray.same_result is True and (ray.max_abs_diff_vs_serial or 0) <= 1e-5
    assert ray.devices == ("cpu:0", "cpu:1") and ray.workers == 2
    assert ray.cold_start_s is not None and len(ray.round_times_s) == 2
    for r in ray.rounds:
        assert sorted(c.client for c in r.clients) == list(range(5))
        for c in r.clients:
            assert c.device == f"cpu:{c.client % 2}"  # round-robin, one actor per slot
    assert {w.device for w in ray.worker_memory} == {"cpu:0", "cpu:1"}


@pytest.mark.slow
def test_actors_are_pinned_to_their_slots_and_reported_to_the_monitor(ray_installed):
    import psutil

    with open_mode(small(), "ray") as session:
        pids = session.mode.pids()
        assert sorted(pids.values()) == ["cpu:0", "cpu:1"]
        slots = {d.id: set(d.cores) for d in cpu_slots(2)}
        for pid, device in pids.items():
            assert set(psutil.Process(pid).cpu_affinity()) == slots[device]
        seconds, aggregate, clients = session.run_round()
        assert len(clients) == 5 and seconds > 0


@pytest.mark.slow
def test_a_killed_actor_fails_only_its_mode_within_seconds(ray_installed):
    config = small(
        case=f"{CASES}:slow_case", modes=("ray", "serial"), clients=4, rounds=1,
        train=TrainConfig(batch_size=8, samples=SampleSizes(64, 64)),
    )
    seen: dict[str, float] = {}

    def kill_soon() -> None:
        time.sleep(0.5)
        victims = named_descendants("ray::RayWorker")
        assert victims, "no actor to kill"
        os.kill(victims[0].pid, signal.SIGKILL)
        seen["killed"] = time.monotonic()

    def progress(mode: str, phase: str, index: int, total: int) -> None:
        if mode == "ray" and phase == "round" and "thread" not in seen:
            seen["thread"] = 1.0
            threading.Thread(target=kill_soon, daemon=True).start()
        if mode == "ray" and phase == "failed":
            seen["failed"] = time.monotonic()

    results = compare(config, progress=progress)
    ray, serial = results.mode("ray"), results.mode("serial")
    assert ray is not None and serial is not None
    assert ray.status == "failed"
    assert "ray actor" in (ray.error or "") and "died" in (ray.error or "")
    assert seen["failed"] - seen["killed"] < 10
    assert serial.status == "ok"


@pytest.mark.slow
def test_an_exception_in_a_client_is_reported_with_its_message(ray_installed):
    results = compare(small(case=f"{CASES}:failing_case", modes=("ray",), rounds=1))
    ray = results.mode("ray")
    assert ray is not None and ray.status == "failed"
    assert "bad batch: every label is 3" in (ray.error or "")
    assert "client 2" in (ray.error or "")
