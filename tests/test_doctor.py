"""``gpubench doctor``: the real command on this machine, and its findings from made-up machines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpubench.cli import main
from gpubench.findings import CODES, machine_findings
from gpubench.report.doctor import doctor_json, format_doctor
from gpubench.report.findings import finding_text
from gpubench.run.doctor import collect_machine, order_mismatch, shared_memory, with_nvml_view

ROOT = Path(__file__).resolve().parents[1]
GiB = 2**30


def _doctor(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "gpubench", "doctor", *args], capture_output=True,
                          text=True, timeout=180, cwd=ROOT, env=env)


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture
def doctor(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """``gpubench doctor ARGS`` in this process: (exit status, stdout, stderr). The OpenMP
    variables are the test's own: the command line sets GOMP_SPINCOUNT where neither is set."""
    for name in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"):
        monkeypatch.setenv(name, "")  # restored (or removed) after the test
        monkeypatch.delenv(name)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["doctor", *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_doctor_json_exits_0_with_findings(doctor):
    code, out, err = doctor("--json")
    assert code == 0, err
    report = json.loads(out)
    assert {"python", "cpu", "torch", "gpus", "nvml", "mps", "shared_memory", "environment",
            "findings"} <= set(report)
    assert report["cpu"]["usable"] >= 1
    codes = [f["code"] for f in report["findings"]]
    assert all({"code", "level", "facts", "message", "hint"} <= set(f) for f in report["findings"])
    if not _has_gpu():
        no_gpu = next(f for f in report["findings"] if f["code"] == "no-gpu")
        assert no_gpu["message"].startswith("no CUDA GPU visible: modes run on CPU slots")
        assert no_gpu["hint"] and no_gpu["facts"]["usable"] == report["cpu"]["usable"]
        assert report["gpus"] == []
        zh = json.loads(doctor("--json", "--lang", "zh")[1])
        assert next(f for f in zh["findings"] if f["code"] == "no-gpu")["message"].startswith(
            "看不到 CUDA GPU")
    else:
        assert "no-gpu" not in codes


def test_doctor_text_in_english_and_chinese(doctor):
    code, out, err = doctor()
    assert code == 0, err
    assert "torch" in out and "/dev/shm" in out
    code, out, err = doctor("--lang", "zh")
    assert code == 0 and "本进程可用" in out, err


@pytest.mark.slow
def test_the_command_line_bounds_openmps_wait_unless_told(monkeypatch):
    # Only a fresh process shows it: the bound is set before torch loads OpenMP, or not at all.
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    proc = _doctor("--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)["environment"]["GOMP_SPINCOUNT"] == "30000"
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    report = json.loads(_doctor("--json").stdout)
    assert report["environment"]["GOMP_SPINCOUNT"] is None
    assert report["environment"]["OMP_WAIT_POLICY"] == "passive"


def machine(**over):
    m = {
        "gpubench": "0.1.0",
        "python": {"version": "3.11.7", "executable": sys.executable},
        "platform": "Linux",
        "cpu": {"model": "EPYC", "count": 8, "affinity": list(range(8)), "usable": 8},
        "environment": {"CUDA_VISIBLE_DEVICES": None, "CUDA_DEVICE_ORDER": None,
                        "OMP_NUM_THREADS": None, "MKL_NUM_THREADS": None},
        "torch": {"torch": "2.4.0", "torch_cuda": "12.1", "torch_threads": 8, "cudnn": 90100,
                  "cudnn_benchmark": False, "cudnn_deterministic": False,
                  "tf32_matmul": True, "tf32_cudnn": True},
        "gpus": [
            {"id": "cuda:0", "index": 0, "name": "RTX 4090", "pci_bus_id": "00000000:41:00.0",
             "uuid": "GPU-a", "memory_total_bytes": 24 * GiB},
            {"id": "cuda:1", "index": 1, "name": "RTX 4090", "pci_bus_id": "00000000:81:00.0",
             "uuid": "GPU-b", "memory_total_bytes": 24 * GiB},
        ],
        "nvml": {"available": True, "binding": "nvidia-ml-py", "binding_version": "12.560",
                 "deprecated_pynvml_package": None, "nvidia_driver_version": "560.35",
                 "nvml_gpus": [
                     {"nvml_index": 0, "name": "RTX 4090", "pci_bus_id": "00000000:41:00.0",
                      "compute_mode": "Default", "mig_mode": False},
                     {"nvml_index": 1, "name": "RTX 4090", "pci_bus_id": "00000000:81:00.0",
                      "compute_mode": "Default", "mig_mode": False},
                 ]},
        "cuda_nvml_order_differs": [],
        "mps": {"running": False, "processes": [], "pipe_directory": "/tmp/nvidia-mps",
                "pipe_directory_exists": False},
        "shared_memory": {"path": "/dev/shm", "total_bytes": 32 * GiB, "free_bytes": 31 * GiB},
    }
    m.update(over)
    return m


def codes(m):
    return [f.code for f in machine_findings(m)]


def words(f):
    """(message, hint) in English, after checking that Chinese renders too."""
    variant = f.facts.get("variant")
    assert f.code in CODES and (variant in CODES[f.code] if variant else not CODES[f.code])
    zh, _ = finding_text(f, "zh")
    assert zh and zh != finding_text(f, "en")[0]
    return finding_text(f, "en")


def test_a_healthy_gpu_machine_has_only_infos():
    found = machine_findings(machine())
    assert [f.code for f in found] == ["no-mps"]
    assert all(f.level == "info" for f in found)


def test_cpu_only_torch_build_is_named():
    m = machine(gpus=[], torch={**machine()["torch"], "torch_cuda": None})
    f = next(f for f in machine_findings(m) if f.code == "no-gpu")
    message, hint = words(f)
    assert f.facts["variant"] == "cpu-build"
    assert "CPU-only build" in message and "CUDA build" in hint


def test_hidden_gpus_name_cuda_visible_devices():
    m = machine(gpus=[], environment={**machine()["environment"], "CUDA_VISIBLE_DEVICES": ""})
    f = next(f for f in machine_findings(m) if f.code == "no-gpu")
    message, hint = words(f)
    assert "built for CUDA 12.1, but sees no GPU (CUDA_VISIBLE_DEVICES='')" in message
    assert "docker run --gpus all" in hint


def test_cuda_error_is_an_error_with_the_runtime_version():
    m = machine(gpus=[{"error": "RuntimeError: driver too old"}])
    f = next(f for f in machine_findings(m) if f.code == "cuda-error")
    assert f.level == "error" and machine_findings(m)[0] == f
    message, hint = words(f)
    assert "driver too old" in message and "(12.1)" in hint
    assert "no-gpu" not in codes(m)


def test_small_shared_memory_is_a_warning_with_its_size():
    m = machine(shared_memory={"path": "/dev/shm", "total_bytes": 64 * 2**20,
                               "free_bytes": 60 * 2**20})
    f = next(f for f in machine_findings(m) if f.code == "small-shm")
    message, hint = words(f)
    assert f.level == "warning" and "holds only 64 MiB (60 MiB free)" in message
    assert "--shm-size" in hint
    assert "small-shm" not in codes(machine())


def test_order_mismatch_between_cuda_and_nvml():
    gpus = machine()["gpus"]
    nvml_gpus = [dict(g, nvml_index=1 - g["nvml_index"]) for g in machine()["nvml"]["nvml_gpus"]]
    differs = order_mismatch(gpus, nvml_gpus)
    assert differs == [{"cuda": 0, "nvml": 1}, {"cuda": 1, "nvml": 0}]
    assert order_mismatch(gpus, machine()["nvml"]["nvml_gpus"]) == []
    # NVML's 8-digit domain and torch's 4-digit, upper- and lower-case, are the same bus
    assert order_mismatch([dict(gpus[0], pci_bus_id="0000:41:00.0")],
                          [dict(machine()["nvml"]["nvml_gpus"][0], pci_bus_id="00000000:41:00.0")]) == []
    f = next(f for f in machine_findings(machine(cuda_nvml_order_differs=differs))
             if f.code == "gpu-order")
    message, hint = words(f)
    assert "differently: cuda:0 is NVML GPU 1; cuda:1 is NVML GPU 0." in message
    assert "PCI_BUS_ID" in hint


def test_exclusive_compute_mode_mig_and_mps():
    nvml = machine()["nvml"]
    gpus = [dict(nvml["nvml_gpus"][0], compute_mode="exclusive_process"),
            dict(nvml["nvml_gpus"][1], mig_mode=True)]
    m = machine(nvml={**nvml, "nvml_gpus": gpus},
                mps={"running": True, "processes": ["nvidia-cuda-mps-control (42)"],
                     "pipe_directory": "/tmp/nvidia-mps", "pipe_directory_exists": True})
    found = {f.code: f for f in machine_findings(m)}
    message, hint = words(found["compute-mode"])
    assert "NVML GPU 0 (RTX 4090) is in compute mode exclusive_process" in message
    assert "multiprocess on it fails" in message and "nvidia-smi -i 0 -c DEFAULT" in hint
    assert found["compute-mode"].level == "warning"
    assert "NVML GPU 1 (RTX 4090) has MIG enabled" in words(found["mig"])[0]
    assert "(nvidia-cuda-mps-control (42))" in words(found["mps"])[0] and "no-mps" not in found


def test_a_prohibited_gpu_is_an_error():
    nvml = machine()["nvml"]
    gpus = [dict(nvml["nvml_gpus"][0], compute_mode="Prohibited"), nvml["nvml_gpus"][1]]
    f = next(f for f in machine_findings(machine(nvml={**nvml, "nvml_gpus": gpus}))
             if f.code == "compute-mode")
    assert f.level == "error" and "no process can use it" in words(f)[0]


def test_tf32_off_and_deprecated_binding_and_missing_nvml():
    torch = {**machine()["torch"], "tf32_matmul": False}
    nvml = {"available": False, "note": "NVML not available: no library",
            "deprecated_pynvml_package": "11.5.0", "nvml_gpus": []}
    found = {f.code: f for f in machine_findings(machine(torch=torch, nvml=nvml))}
    assert "cuDNN TF32 is on, cudnn.benchmark is off" in words(found["tf32-off"])[0]
    assert "NVML is not available (NVML not available: no library)" in words(found["no-nvml"])[0]
    assert "`pynvml` package 11.5.0" in words(found["deprecated-pynvml"])[0]


def test_host_limits_affinity_one_core_and_thread_variables():
    env = {**machine()["environment"], "OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "2"}
    m = machine(cpu={"model": "EPYC", "count": 8, "affinity": [3], "usable": 1}, gpus=[],
                environment=env)
    found = {f.code: f for f in machine_findings(m)}
    assert "may use 1 of 8 cores (3)" in words(found["cpu-affinity"])[0]
    assert "only 1 usable core and no GPU" in words(found["one-core"])[0]
    assert words(found["thread-variables"])[0].startswith(
        "OMP_NUM_THREADS=4, MKL_NUM_THREADS=2 is set")


def test_format_doctor_lists_gpus_and_findings():
    from gpubench.api import doctor

    report = doctor()
    assert all(set(f) == {"level", "code", "facts"} for f in report["findings"])
    text = format_doctor(report)
    assert "CPU" in text and "NVML" in text
    fake = machine()
    fake["gpus"] = with_nvml_view(fake["gpus"], fake["nvml"]["nvml_gpus"])
    fake["findings"] = [f.to_dict() for f in machine_findings(fake)]
    text = format_doctor(fake)
    assert "cuda:0    RTX 4090, 24576 MiB, compute mode Default, MIG off, GPU-a" in text
    assert "NVML      available; binding nvidia-ml-py 12.560; driver 560.35" in text
    assert "- info [no-mps] no MPS daemon runs" in text
    zh = format_doctor(fake, lang="zh")
    assert "cuda:0    RTX 4090，24576 MiB，计算模式 Default，MIG 关闭，GPU-a" in zh
    assert "诊断结论" in zh and "没有运行 MPS 守护进程" in zh
    record = doctor_json(fake, "zh")["findings"][0]
    assert record["code"] == "no-mps" and record["facts"] == {} and "MPS" in record["message"]


def test_collect_machine_without_gpu_and_shared_memory_errors(tmp_path):
    m = collect_machine()
    assert m["cpu"]["usable"] >= 1 and m["python"]["version"]
    missing = shared_memory(str(tmp_path / "nope"))
    assert missing["total_bytes"] is None and missing["note"]
    f = next(f for f in machine_findings(machine(shared_memory=missing)) if f.code == "no-shm")
    assert f.level == "warning" and f"{missing['path']} cannot be read" in words(f)[0]
