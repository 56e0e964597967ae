"""The streams mode: not applicable on CPU slots (with its reason); on a GPU, serial's result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpubench.config import RunConfig
from gpubench.modes.streams import NOT_ON_CPU
from gpubench.results import write_results
from gpubench.run.harness import compare
from tests.conftest import run_config


def _config(devices: str) -> RunConfig:
    return run_config(clients=3, samples=48, batch_size=16, seed=0, devices=devices,
                      modes=("serial", "streams"), workers=2)


def test_streams_on_cpu_slots_is_not_applicable_with_its_reason(tmp_path: Path) -> None:
    results = compare(_config("cpu:1"))
    streams = results.mode("streams")
    assert streams is not None
    assert streams.status == "not_applicable"
    assert streams.error == NOT_ON_CPU
    serial = results.mode("serial")
    assert serial is not None and serial.status == "ok"
    data = json.loads(write_results(results, tmp_path / "r.json").read_text())
    (entry,) = [m for m in data["modes"] if m["name"] == "streams"]
    assert entry["status"] == "not_applicable"
    assert "CUDA streams need a GPU" in entry["error"]


@pytest.mark.gpu
def test_streams_on_a_gpu_matches_serial() -> None:
    results = compare(_config("cuda:0"))
    streams = results.mode("streams")
    assert streams is not None and streams.status == "ok", streams
    assert streams.same_result is True
    assert streams.max_abs_diff_vs_serial is not None
    assert streams.max_abs_diff_vs_serial <= results.config["tolerance_used"]
