"""Which counters this machine's GPUs give the monitor, and why the others are missing.

:func:`gpu_counters` opens every GPU NVML sees, reads it twice (GPM metrics are differences
between two samples) and returns plain, JSON-ready dicts: a counter's value is what measures
it, or ``None`` with a reason (and, where something else would give it, a hint). It never
raises for a missing library, driver, GPU or permission.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from gpubench.machine.devices import Device
from gpubench.monitor import nvml
from gpubench.monitor.probe import Reading

SETTLE_S = 0.1  # between the two reads: GPM needs two samples apart in time

GPM_HINT = (
    "GPM needs a Hopper or newer data-centre GPU (H100, H200, B200) and a driver from 520 on; "
    "on Volta and Ampere data-centre GPUs DCGM's profiling fields give them "
    "(`dcgmi dmon -e 1002,1003`: SM active, SM occupancy); on GeForce GPUs only a profiler "
    "does, per kernel (Nsight Compute)"
)

# counter -> (what measures it, the facade's field name in NvmlGpu.off, value in a Reading,
#             hint when missing)
COUNTERS: dict[str, tuple[str, str, Callable[[Reading], Any] | None, str | None]] = {
    "kernel_active": (
        "nvmlDeviceGetUtilizationRates: % of time any kernel ran",
        "util",
        lambda r: r.util_pct,
        None,
    ),
    "util_samples": (
        "nvmlDeviceGetSamples: the driver's timestamped kernel-active samples",
        "util_samples",
        None,
        "without them kernel-active time is polled and attributed to the sampler's windows",
    ),
    "sm_active": ("GPM NVML_GPM_METRIC_SM_UTIL: % of SMs busy", "sm_active",
                  lambda r: r.sm_active_pct, GPM_HINT),
    "sm_occupancy": ("GPM NVML_GPM_METRIC_SM_OCCUPANCY: % of warp slots in use", "sm_occupancy",
                     lambda r: r.sm_occupancy_pct, GPM_HINT),
    "process_memory": (
        "nvmlDeviceGetComputeRunningProcesses: GPU memory per process",
        "process_mem",
        None,
        "in a container NVML may list host pids: run with the host's pid namespace "
        "(`docker run --pid=host`) to match them",
    ),
    "energy": (
        "nvmlDeviceGetTotalEnergyConsumption: energy counter (Volta and later)",
        "energy",
        lambda r: r.energy_j,
        "power draw (nvmlDeviceGetPowerUsage) times time is used where the counter is missing",
    ),
    "power": ("nvmlDeviceGetPowerUsage: board power draw", "power", lambda r: r.power_w, None),
}


def _missing(reason: str) -> dict[str, Any]:
    return {
        "counters": dict.fromkeys(COUNTERS),
        "reasons": dict.fromkeys(COUNTERS, reason),
        "hints": {k: hint for k, (_, _, _, hint) in COUNTERS.items() if hint},
    }


def _one_gpu(gpu: nvml.NvmlGpu, settle_s: float, sleep: Callable[[float], None]) -> dict[str, Any]:
    own = [os.getpid()]  # any pid makes the facade ask for the process list
    first = gpu.read(own)
    sleep(settle_s)
    second = gpu.read(own)
    counters: dict[str, str | None] = {}
    reasons: dict[str, str] = {}
    hints: dict[str, str] = {}
    for name, (how, field, value, hint) in COUNTERS.items():
        if gpu.lost:
            why: str | None = "the GPU is lost"
        elif field in gpu.off:
            why = gpu.off[field]
        elif value is not None and value(first) is None and value(second) is None:
            why = "NVML returned no value"
        else:
            why = None
        counters[name] = how if why is None else None
        if why is not None:
            reasons[name] = why
            if hint:
                hints[name] = hint
    return {"counters": counters, "reasons": reasons, "hints": hints}


def gpu_counters(
    *, settle_s: float = SETTLE_S, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any]:
    """Every NVML GPU's counters, and for the run: a counter is offered when every GPU has it."""
    info = nvml.environment_info()
    if "nvml_note" in info:
        return {"nvml": False, "reason": info["nvml_note"], "gpus": [],
                **_missing(info["nvml_note"])}
    devices = [
        Device(id=f"nvml:{g['nvml_index']}", kind="cuda", index=g["nvml_index"],
               name=g.get("name") or "", uuid=g.get("uuid"), pci_bus_id=g.get("pci_bus_id"))
        for g in info.get("nvml_gpus") or []
    ]
    gpus, not_found = nvml.open_gpus(devices)
    per_gpu = []
    try:
        for d in devices:
            entry: dict[str, Any] = {"nvml_index": d.index, "name": d.name, "uuid": d.uuid}
            gpu = gpus.get(d.id)
            if gpu is None:
                entry.update(_missing(not_found.get(d.id, "no NVML handle")))
            else:
                entry.update(_one_gpu(gpu, settle_s, sleep))
            per_gpu.append(entry)
    finally:
        for gpu in gpus.values():
            gpu.close()
    if not per_gpu:
        return {"nvml": True, "reason": None, "gpus": [], **_missing("NVML sees no GPU")}
    counters: dict[str, str | None] = {}
    reasons: dict[str, str] = {}
    hints: dict[str, str] = {}
    for name in COUNTERS:
        lacking = [g for g in per_gpu if g["counters"][name] is None]
        counters[name] = None if lacking else per_gpu[0]["counters"][name]
        if lacking:
            reasons[name] = "; ".join(
                f"GPU {g['nvml_index']} ({g['name']}): {g['reasons'][name]}" for g in lacking
            )
            if name in lacking[0]["hints"]:
                hints[name] = lacking[0]["hints"][name]
    return {"nvml": True, "reason": None, "gpus": per_gpu, "counters": counters,
            "reasons": reasons, "hints": hints}
