"""serial, ray and flower in one real run on two CPU slots (Ray and Flower start once for the
three tests that read it): the dropout case, four clients of unequal sizes (48 to 80 samples),
a warm-up and two rounds, one serial run (not one beside each)."""

from __future__ import annotations

import os
from typing import Any

import psutil
import pytest

from gpubench.machine.devices import cpu_slots
from gpubench.monitor.timeline import OtherLoadStats
from gpubench.results import Results
from gpubench.run.harness import compare
from tests.conftest import CASES, run_config
from tests.ray_helpers import no_ray_process_left

pytestmark = [pytest.mark.ray, pytest.mark.slow]

Seen = dict[str, dict[int, tuple[str, set[int]]]]


class AffinityWatcher:
    """A monitor that, when the harness hands it a mode's processes, reads each one's CPU
    affinity there and then (the processes are alive and about to train)."""

    def __init__(self, devices: Any, interval_s: float) -> None:
        self.seen: Seen = {}

    def start(self) -> None: ...
    def mark(self, mode: str | None, phase: str, round_index: int | None) -> None: ...
    def retag(self, span: int, phase: str) -> None: ...
    def unwatch_pids(self, mode: str) -> None: ...

    def other_load(self, span: int) -> dict[str, float | None]:
        return {}

    def mode_other_load(self, mode: str, devices: Any) -> OtherLoadStats:
        return OtherLoadStats({}, ())
    def stop(self) -> None: ...

    def results_section(self) -> dict[str, Any]:
        return {}

    def device_stats(self, mode: str) -> tuple[Any, ...]:
        return ()

    def watch_pids(self, mode: str, pids: Any) -> None:
        self.seen[mode] = {pid: (dev, set(psutil.Process(pid).cpu_affinity()))
                           for pid, dev in pids.items()}


@pytest.fixture(scope="module")
def ray_and_flower_run() -> tuple[Results, Seen]:
    """The run, with the affinity of every process the monitor was handed; no Ray process is
    left after it."""
    pytest.importorskip("ray")
    pytest.importorskip("flwr")
    watchers: list[AffinityWatcher] = []

    def watcher(devices: Any, interval_s: float) -> AffinityWatcher:
        watchers.append(AffinityWatcher(devices, interval_s))
        return watchers[-1]

    config = run_config(case=f"{CASES}:dropout_case", clients=4, samples=(48, 80), seed=5,
                        modes=("serial", "ray", "flower"), warmup=1, rounds=2,
                        interleave=False, sample_interval_s=0.1)
    with no_ray_process_left("the ray and flower run"):
        results = compare(config, sampler_factory=watcher)
    (seen,) = [w.seen for w in watchers]
    return results, seen


def test_dropout_case_same_under_ray_and_flower(ray_and_flower_run) -> None:
    results, _ = ray_and_flower_run
    assert results.config["draws_global_rng"] is True
    assert [m.name for m in results.modes] == ["serial", "ray", "flower"]
    for m in results.modes:
        assert m.status == "ok", m.error
        assert m.same_result is not False, (m.name, m.worst_client_diff)
        if m.name != "serial":
            assert m.same_result is True, (m.name, m.worst_client_diff)


def test_ray_computes_serials_result_on_slot_pinned_actors_it_reports(ray_and_flower_run):
    results, seen_by_mode = ray_and_flower_run
    ray = results.mode("ray")
    assert ray is not None and ray.status == "ok", ray and ray.error
    assert ray.same_result is True and (ray.max_abs_diff_vs_serial or 0) <= 1e-5
    assert ray.devices == ("cpu:0", "cpu:1") and ray.workers == 2
    assert ray.cold_start_s is not None and len(ray.round_times_s) == 2
    for r in ray.rounds:
        assert sorted(c.client for c in r.clients) == list(range(4))
        for c in r.clients:
            assert c.device == f"cpu:{c.client % 2}"  # round-robin, one actor per slot
    assert {w.device for w in ray.worker_memory} == {"cpu:0", "cpu:1"}
    # The monitor was handed one actor per slot, each pinned to its slot's cores.
    seen = seen_by_mode["ray"]
    slots = {d.id: set(d.cores) for d in cpu_slots(2)}
    assert sorted(dev for dev, _ in seen.values()) == ["cpu:0", "cpu:1"]
    assert all(cores == slots[dev] for dev, cores in seen.values())
    assert os.getpid() not in seen


def test_flowers_fedavg_matches_serial(ray_and_flower_run):
    # Unequal client sizes: Flower weights by num-examples, as gpubench's FedAvg does.
    results, _ = ray_and_flower_run
    flower = results.mode("flower")
    assert flower is not None and flower.status == "ok", flower and flower.error
    assert flower.same_result is True and (flower.max_abs_diff_vs_serial or 0) <= 1e-5
    assert flower.cold_start_s is not None and flower.cold_start_s > 0
    assert len(flower.warmup_times_s) == 1 and len(flower.round_times_s) == 2
    assert flower.workers == 2  # two one-CPU actors on two one-core slots
    assert (flower.extra.engine or {}).get("engine") == "flwr run"
    sizes = list(results.config["samples"])
    assert len(set(sizes)) > 1
    for r in flower.rounds:
        assert sorted(c.client for c in r.clients) == list(range(4))
        assert [c.samples for c in sorted(r.clients, key=lambda c: c.client)] == sizes
        assert all(0 <= c.start_s <= c.end_s <= r.time_s for c in r.clients)
    assert {w.worker for w in flower.worker_memory} == {0, 1}


