"""The flower mode: `flwr run` against a private local SuperLink, on a real local Ray, against serial (the run
is the one tests.ray_helpers.ray_and_flower makes for the ray and dropout tests too)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from gpubench.config import RunConfig
from gpubench.modes.flower import FLOWER_MISSING
from gpubench.run.harness import compare
from tests.conftest import run_config


def small(**kw: Any) -> RunConfig:
    """Four clients of unequal sizes, serial and flower, a warm-up and two rounds."""
    return run_config(**{"clients": 4, "samples": (48, 80), "seed": 5,
                         "modes": ("serial", "flower"), "warmup": 1, "rounds": 2, **kw})


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
