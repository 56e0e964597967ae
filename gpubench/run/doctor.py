"""``doctor``: what this machine offers for the modes.

:func:`collect_machine` looks (it never changes anything, and never fails for lack of a GPU,
a driver or NVML: what is missing is recorded as ``None`` or a note);
:func:`gpubench.findings.machine_findings` says what will bite, as findings
(:func:`gpubench.api.doctor` puts the two together); ``gpubench.report.doctor`` renders both.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from gpubench.machine.isolation import OPENMP_WAIT_VARIABLES
from gpubench.results import THREAD_VARIABLES

SHM_PATH = "/dev/shm"
MPS_PROCESSES = ("nvidia-cuda-mps-control", "nvidia-cuda-mps-server")
MPS_PIPE_DEFAULT = "/tmp/nvidia-mps"


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def shared_memory(path: str = SHM_PATH) -> dict[str, Any]:
    try:
        usage = shutil.disk_usage(path)
    except OSError as exc:
        return {"path": path, "total_bytes": None, "free_bytes": None,
                "note": exc.strerror or str(exc)}
    return {"path": path, "total_bytes": usage.total, "free_bytes": usage.free}


def mps_status() -> dict[str, Any]:
    """Whether an MPS control daemon or server runs (by process name) and its pipe dir."""
    pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or MPS_PIPE_DEFAULT
    found: list[str] = []
    try:
        import psutil

        for proc in psutil.process_iter(["name"]):
            name = proc.info.get("name") or ""
            if name in MPS_PROCESSES:
                found.append(f"{name} ({proc.pid})")
    except Exception:  # psutil missing or a process vanished while listed
        pass
    return {"running": bool(found), "processes": found, "pipe_directory": pipe,
            "pipe_directory_exists": Path(pipe).is_dir()}


def nvml_status() -> dict[str, Any]:
    """NVML's view (through the one facade) and which Python binding is installed."""
    info: dict[str, Any] = {
        "binding": "nvidia-ml-py" if _version("nvidia-ml-py") else None,
        "binding_version": _version("nvidia-ml-py"),
        # The deprecated `pynvml` distribution installs a module of the same name.
        "deprecated_pynvml_package": _version("pynvml"),
    }
    try:
        from gpubench.monitor import nvml
    except ImportError as exc:
        info.update(available=False, note=f"gpubench's NVML facade cannot load: {exc}")
        return info
    try:
        env = nvml.environment_info()
    except Exception as exc:  # a broken driver must not stop the doctor
        info.update(available=False, note=f"{type(exc).__name__}: {exc}")
        return info
    note = env.pop("nvml_note", None)
    info.update(env)
    info["available"] = note is None
    if note is not None:
        info["note"] = note
    return info


def torch_status() -> dict[str, Any]:
    try:
        from gpubench.monitor.environment import torch_info
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        return {"torch": None, "note": str(exc)}
    return torch_info()


def cuda_gpus() -> list[dict[str, Any]]:
    """The GPUs torch sees, in CUDA's order."""
    from gpubench.config import ConfigError
    from gpubench.machine.devices import resolve_devices

    try:
        found = resolve_devices("cuda").devices
    except ConfigError:
        return []
    except Exception as exc:  # CUDA initialisation errors (driver/runtime mismatch, ...)
        return [{"error": f"{type(exc).__name__}: {exc}"}]
    return [d.to_dict() for d in found]


def _bus(pci: Any) -> str | None:
    """A PCI bus id in one form: NVML may give 8- or 4-digit domains and any case."""
    if isinstance(pci, bytes):  # old bindings return bytes
        pci = pci.decode()
    if not isinstance(pci, str) or ":" not in pci:
        return None
    domain, rest = pci.split(":", 1)
    return f"{int(domain, 16):04x}:{rest.lower()}"


def order_mismatch(
    gpus: list[dict[str, Any]], nvml_gpus: list[dict[str, Any]]
) -> list[dict[str, int]] | None:
    """``{"cuda": i, "nvml": j}`` for each GPU when the two orders differ; None if unknowable."""
    nvml_index = {_bus(g.get("pci_bus_id")): g.get("nvml_index") for g in nvml_gpus}
    pairs = []
    for g in gpus:
        j = nvml_index.get(_bus(g.get("pci_bus_id")))
        if j is None:
            return None
        pairs.append((int(g.get("index") or 0), int(j)))
    if not pairs:
        return None
    # Relative order matters (CUDA_VISIBLE_DEVICES may hide GPUs): compare sorted positions.
    by_nvml = sorted(pairs, key=lambda p: p[1])
    if [p[0] for p in by_nvml] == sorted(p[0] for p in pairs):
        return []
    return [{"cuda": i, "nvml": j} for i, j in pairs]


def with_nvml_view(gpus: list[dict[str, Any]], nvml_gpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each GPU torch sees, with NVML's compute and MIG modes for it (matched by PCI bus)."""
    by_bus = {_bus(g.get("pci_bus_id")): g for g in nvml_gpus}
    out = []
    for g in gpus:
        seen = by_bus.get(_bus(g.get("pci_bus_id")), {}) if "error" not in g else None
        if seen is None:
            out.append(g)
            continue
        out.append({**g, "compute_mode": seen.get("compute_mode"), "mig_mode": seen.get("mig_mode")})
    return out


def collect_machine() -> dict[str, Any]:
    """Everything the doctor looks at, as plain JSON-ready data."""
    from gpubench.machine.devices import usable_cores
    from gpubench.monitor.capabilities import gpu_counters
    from gpubench.monitor.environment import cpu_model
    from gpubench.version import __version__

    cores = usable_cores()
    gpus = cuda_gpus()
    nvml = nvml_status()
    nvml_gpus = nvml.get("nvml_gpus") or []
    return {
        "gpubench": __version__,
        "python": {"version": sys.version.split()[0], "executable": sys.executable},
        "platform": platform.platform(),
        "cpu": {
            "model": cpu_model(),
            "count": os.cpu_count(),
            "affinity": cores,
            "usable": len(cores),
        },
        "environment": {
            name: os.environ.get(name)
            for name in (
                "CUDA_VISIBLE_DEVICES",
                "CUDA_DEVICE_ORDER",
                *THREAD_VARIABLES,
                *OPENMP_WAIT_VARIABLES,
            )
        },
        "torch": torch_status(),
        "gpus": with_nvml_view(gpus, nvml_gpus),
        "nvml": nvml,
        "cuda_nvml_order_differs": order_mismatch(
            [g for g in gpus if "error" not in g], nvml_gpus
        ),
        "mps": mps_status(),
        "shared_memory": shared_memory(),
        "monitor": gpu_counters(),  # the counters the monitor can sample here, or why not
    }
