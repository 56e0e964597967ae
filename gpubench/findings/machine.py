"""What will bite on this machine: rules over the dict ``gpubench.run.doctor`` collects.

The doctor looks (GPUs, NVML, MPS, shared memory, environment); these rules say what that
means for the modes, as findings like a run's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpubench.findings.base import Finding, by_level
from gpubench.results import THREAD_VARIABLES

# Process modes pass weights through shared memory; Docker's default /dev/shm is 64 MiB.
SHM_LOW_BYTES = 1 << 30
EXCLUSIVE_MODES = ("exclusive_process", "exclusive_thread")

CODES: dict[str, tuple[str, ...]] = {
    "cuda-error": (),
    "no-gpu": ("cpu-build", "no-device"),
    "no-nvml": (),
    "deprecated-pynvml": (),
    "gpu-order": (),
    "compute-mode": ("prohibited", "exclusive"),
    "mig": (),
    "mps": (),
    "no-mps": (),
    "tf32-off": (),
    "cpu-affinity": (),
    "one-core": (),
    "no-shm": (),
    "small-shm": (),
    "thread-variables": (),
}

Machine = dict[str, Any]


def _gpus(m: Machine) -> list[dict[str, Any]]:
    return [g for g in m["gpus"] if "error" not in g]


def cuda_error(m: Machine) -> list[Finding]:
    broken = [g["error"] for g in m["gpus"] if "error" in g]
    if not broken:
        return []
    return [Finding("error", "cuda-error",
                    {"error": broken[0], "torch_cuda": m["torch"].get("torch_cuda")})]


def no_gpu(m: Machine) -> list[Finding]:
    if m["gpus"]:
        return []
    torch = m["torch"]
    usable = m["cpu"]["usable"]
    facts: dict[str, Any] = {"torch": torch.get("torch"), "torch_cuda": torch.get("torch_cuda"),
                             "slots": min(2, usable), "usable": usable}
    if not torch.get("torch_cuda"):
        return [Finding("warning", "no-gpu", {"variant": "cpu-build", **facts})]
    visible = m["environment"].get("CUDA_VISIBLE_DEVICES")
    facts["visible"] = {"value": visible} if visible is not None else None
    return [Finding("warning", "no-gpu", {"variant": "no-device", **facts})]


def nvml_findings(m: Machine) -> list[Finding]:
    out = []
    nvml = m["nvml"]
    if _gpus(m) and not nvml.get("available"):
        out.append(Finding("warning", "no-nvml", {"note": nvml.get("note")}))
    if nvml.get("deprecated_pynvml_package"):
        out.append(Finding("warning", "deprecated-pynvml",
                           {"version": nvml["deprecated_pynvml_package"]}))
    differs = m.get("cuda_nvml_order_differs")
    if differs:
        out.append(Finding("warning", "gpu-order", {"pairs": list(differs)}))
    for g in nvml.get("nvml_gpus") or []:
        mode = str(g.get("compute_mode") or "").lower()
        gpu = {"gpu": g.get("nvml_index"), "name": g.get("name")}
        if mode == "prohibited":
            out.append(Finding("error", "compute-mode",
                               {"variant": "prohibited", "compute_mode": mode, **gpu}))
        elif mode in EXCLUSIVE_MODES:
            out.append(Finding("warning", "compute-mode",
                               {"variant": "exclusive", "compute_mode": mode, **gpu}))
        if g.get("mig_mode"):
            out.append(Finding("warning", "mig", gpu))
    return out


def sharing_findings(m: Machine) -> list[Finding]:
    if not _gpus(m):
        return []
    mps = m["mps"]
    out = [Finding("info", "mps", {"processes": list(mps["processes"])}) if mps["running"]
           else Finding("info", "no-mps", {})]
    torch = m["torch"]
    if not torch.get("tf32_matmul"):
        out.append(Finding("info", "tf32-off", {
            "tf32_cudnn": bool(torch.get("tf32_cudnn")),
            "cudnn_benchmark": bool(torch.get("cudnn_benchmark")),
        }))
    return out


def host_findings(m: Machine) -> list[Finding]:
    out = []
    cpu = m["cpu"]
    if cpu["usable"] < (cpu["count"] or 0):
        out.append(Finding("info", "cpu-affinity", {
            "usable": cpu["usable"], "count": cpu["count"], "cores": list(cpu["affinity"]),
        }))
    if cpu["usable"] < 2 and not m["gpus"]:
        out.append(Finding("warning", "one-core", {"usable": cpu["usable"]}))
    shm = m["shared_memory"]
    total = shm.get("total_bytes")
    if total is None:
        out.append(Finding("warning", "no-shm", {"path": shm["path"], "note": shm.get("note")}))
    elif total < SHM_LOW_BYTES:
        out.append(Finding("warning", "small-shm", {
            "path": shm["path"], "total_bytes": total, "free_bytes": shm.get("free_bytes"),
        }))
    variables = [{"name": k, "value": v} for k, v in m["environment"].items()
                 if k in THREAD_VARIABLES and v]
    if variables:
        out.append(Finding("info", "thread-variables", {"variables": variables}))
    return out


RULES: tuple[Callable[[Machine], list[Finding]], ...] = (
    cuda_error,
    no_gpu,
    nvml_findings,
    sharing_findings,
    host_findings,
)


def machine_findings(machine: Machine) -> list[Finding]:
    """Every finding about the machine the doctor saw: errors first, then warnings, infos."""
    return by_level([f for rule in RULES for f in rule(machine)])
