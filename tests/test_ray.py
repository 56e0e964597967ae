"""The ray mode on a real local Ray with two CPU slots: failures, no leftovers (its result against
serial's: tests/test_ray_and_flower.py)."""

from __future__ import annotations

import argparse
import os
import sys

import pytest

from gpubench.commands.arguments import add_run_arguments, config_from_args
from gpubench.config import ConfigError
from gpubench.machine.devices import Device, cpu_slots
from gpubench.modes.base import Plan
from gpubench.modes.ray_common import (
    RAY_MISSING,
    local_init_args,
    local_ray_environment,
    worker_resources,
)
from gpubench.run.harness import compare
from tests.conftest import CASES
from tests.ray_helpers import no_ray_process_left, small

pytestmark = pytest.mark.ray


@pytest.fixture
def ray_installed():
    pytest.importorskip("ray")
    with no_ray_process_left():
        yield


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
    # Bad values are bad input, refused by the config's validation (tests/test_config_fields.py).
    with pytest.raises(ConfigError, match="--cpus-per-worker must be >= 0"):
        plan_for({"cpus_per_worker": -1}).config.validate()
    with pytest.raises(ConfigError, match="whole number"):
        plan_for({"gpus_per_worker": 1.5}).config.validate()


def test_a_local_ray_inherits_the_path_and_the_runs_gpus_and_the_process_gets_its_own_back(
    monkeypatch,
):
    # The raylet inherits the path (as the job's runtime_env, every actor would need a fresh
    # worker); while it starts, it sees exactly the run's GPUs.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    gpu = Device("cuda:0", "cuda", 0, "GPU", visible_as="GPU-2f0c")
    with local_ray_environment((gpu, *cpu_slots(1))):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-2f0c"
        assert os.environ["PYTHONPATH"].split(os.pathsep) == [p for p in sys.path if p]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2" and "PYTHONPATH" not in os.environ
    with local_ray_environment(cpu_slots(2)):  # CPU slots: the GPUs visible stay as they are
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2"
    assert "runtime_env" not in local_init_args(2.0, 0)


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
def test_an_exception_in_a_client_is_reported_with_its_message(ray_installed):
    # one slot: the one actor trains client 2, which raises
    results = compare(small(case=f"{CASES}:failing_case", modes=("ray",), rounds=1,
                            devices="cpu:1"))
    ray = results.mode("ray")
    assert ray is not None and ray.status == "failed"
    assert "bad batch: every label is 3" in (ray.error or "")
    assert "client 2" in (ray.error or "")
