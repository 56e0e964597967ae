"""The flower mode without flwr; under `flwr run` against a private local SuperLink, on a real
local Ray, against serial, in tests/test_ray_and_flower.py (one run for ray and flower)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from gpubench.config import RunConfig
from gpubench.modes.flower import FLOWER_MISSING
from gpubench.run.harness import compare
from tests.conftest import run_config

pytestmark = pytest.mark.ray


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
