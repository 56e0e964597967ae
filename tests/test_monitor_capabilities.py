"""``gpu_counters``: which counters the GPUs give, through the real binding and a fake NVML."""

from __future__ import annotations

import json

import pytest

from gpubench.monitor import nvml
from gpubench.monitor.capabilities import COUNTERS, gpu_counters
from tests.fake_nvml import FakeGpu, FakeNvmlLib, install


def h200() -> FakeGpu:
    return FakeGpu(
        "GPU-aaaaaaaa-1111-2222-3333-444444444444",
        "00000000:1A:00.0",
        name="NVIDIA H200",
        util=[90],
        processes=[(31337, 2**30)],
        gpm=True,
        util_samples=lambda since: [(since + 1000, 80)],
    )


def rtx4090() -> FakeGpu:
    gpu = FakeGpu(
        "GPU-bbbbbbbb-5555-6666-7777-888888888888",
        "00000000:3D:00.0",
        name="NVIDIA GeForce RTX 4090",
        util=[10],
    )
    gpu.unsupported.add("nvmlDeviceGetComputeRunningProcesses_v3")
    return gpu


@pytest.fixture(autouse=True)
def _shutdown():
    yield
    nvml.shutdown()


def test_hopper_offers_every_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeNvmlLib([h200()]))
    naps: list[float] = []
    got = gpu_counters(sleep=naps.append)
    assert naps == [0.1]  # GPM needs two samples apart in time
    (gpu,) = got["gpus"]
    assert gpu["name"] == "NVIDIA H200" and gpu["reasons"] == {}
    assert all(gpu["counters"][name] for name in COUNTERS)
    assert got["counters"]["sm_occupancy"].startswith("GPM")
    json.dumps(got)  # plain data


def test_missing_counters_are_null_with_a_reason_and_a_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install(monkeypatch, FakeNvmlLib([h200(), rtx4090()]))
    got = gpu_counters(sleep=lambda s: None)
    old = got["gpus"][1]
    assert old["counters"]["kernel_active"] and old["counters"]["energy"]
    for name in ("sm_active", "sm_occupancy", "util_samples", "process_memory"):
        assert old["counters"][name] is None, name
    assert old["reasons"]["sm_active"] == "GPM not supported by this GPU (Hopper and later)"
    assert old["reasons"]["process_memory"] == "Not Supported"
    assert "DCGM" in old["hints"]["sm_occupancy"]
    # For the run: offered only where every GPU offers it, and the reason names the GPU.
    assert got["counters"]["sm_active"] is None and got["counters"]["kernel_active"]
    assert got["reasons"]["sm_active"].startswith("GPU 1 (NVIDIA GeForce RTX 4090): GPM")
    assert "energy" not in got["reasons"]


def test_no_nvml_lists_every_counter_as_null(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, None)
    got = gpu_counters(sleep=lambda s: None)
    assert got["nvml"] is False and got["gpus"] == []
    assert set(got["counters"]) == set(COUNTERS) and not any(got["counters"].values())
    assert "no NVML library" in got["reasons"]["kernel_active"]
    assert "hint" in got["reason"]
