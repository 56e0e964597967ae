"""Worker processes' torch settings and CPU share, recorded and compared with the parent's."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gpubench.findings import compute_findings
from gpubench.machine.devices import Device
from gpubench.machine.isolation import cpu_share, worker_environment
from gpubench.modes.pool import WorkerSpec
from gpubench.modes.processes import with_peers
from gpubench.results import ModeExtra, ModeResult, read_results, write_results
from tests.conftest import run_config

GPU = Device("cuda:0", "cuda", 0, "NVIDIA GeForce RTX 4090", visible_as="GPU-2f0c")


@pytest.mark.slow
def test_a_library_callers_settings_are_recorded_per_worker_and_a_mismatch_is_a_finding(
    tmp_path,
):
    from gpubench import compare

    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # reaches serial, not a fresh worker process
    try:
        results = compare(run_config(modes=("serial", "multiprocess"), workers=2))
    finally:
        torch.backends.cudnn.benchmark = before
    serial, multi = results.modes
    assert serial.extra.worker_settings is None  # it trained in this process
    reported = multi.extra.worker_settings
    assert reported and set(reported) == {"0", "1"}
    assert all(s["cudnn_benchmark"] is False and s["torch_threads"] >= 1 for s in reported.values())
    assert results.environment["cudnn_benchmark"] is True
    found = [f for f in compute_findings(results) if f.code == "worker-settings"]
    assert [f.facts["mode"] for f in found] == ["multiprocess"]
    assert found[0].facts["settings"] == ["cudnn_benchmark"]
    from gpubench.report.findings import finding_text
    assert "cudnn_benchmark off, here on" in finding_text(found[0], "en")[0]
    path = tmp_path / "r.json"
    write_results(results, path)
    assert read_results(path).modes[1].extra.worker_settings == reported


def test_same_settings_give_no_finding():
    from gpubench.findings.settings import worker_settings

    base = {"tf32_matmul": False, "cudnn_benchmark": False, "float32_matmul_precision": "highest"}

    class R:
        environment = base
        modes = (ModeResult("multiprocess", "ok", extra=ModeExtra(
            worker_settings={"0": {**base, "torch_threads": 4}})),)

    assert worker_settings(R) == []  # type: ignore[arg-type]
    changed = dataclasses.replace(R.modes[0], extra=ModeExtra(
        worker_settings={"0": {**base, "float32_matmul_precision": "high"}}))
    R.modes = (changed,)
    assert worker_settings(R)[0].facts["settings"] == ["float32_matmul_precision"]  # type: ignore[arg-type]


def test_cuda_workers_get_a_share_of_the_hosts_cores():
    specs = with_peers([WorkerSpec(w, GPU, (w,)) for w in range(16)])
    assert {s.threads for s in specs} == {cpu_share(16)}
    assert cpu_share(16, cores=16) == 1 and cpu_share(4, cores=16) == 4 and cpu_share(32, 16) == 1
    env = worker_environment(GPU, threads=4)
    assert env["OMP_NUM_THREADS"] == "4" and env["CUDA_VISIBLE_DEVICES"] == "GPU-2f0c"
    slot = Device("cpu:0", "cpu", 0, "slot", cores=(0, 1))
    assert with_peers([WorkerSpec(0, slot, (0,))])[0].threads == 0  # a slot has its cores
