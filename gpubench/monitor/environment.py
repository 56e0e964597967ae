"""What changes speed: versions, devices, flags, CPU. Recorded with every run."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpubench.machine.devices import Device, usable_cores
from gpubench.machine.isolation import OPENMP_WAIT_VARIABLES, process_settings
from gpubench.version import __version__


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def git_commit(cwd: str | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def torch_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cudnn": None,
        **process_settings(),
    }
    # Asking loads cuDNN's libraries (~50 MB resident), which a run without CUDA never uses.
    if info["cuda_available"]:
        try:
            info["cudnn"] = torch.backends.cudnn.version()
        except Exception:  # no cuDNN in this build
            pass
    # Its version from the package metadata: importing torchvision costs ~2 s (it loads
    # torch._dynamo), which every command would pay for one string.
    try:
        from importlib import metadata

        info["torchvision"] = metadata.version("torchvision")
    except Exception:
        info["torchvision"] = None
    return info


def collect_environment(devices: Sequence[Device]) -> dict[str, Any]:
    env: dict[str, Any] = {
        "gpubench": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": usable_cores(),
        "git_commit": git_commit(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cuda_device_order": os.environ.get("CUDA_DEVICE_ORDER"),
        "cuda_mps_pipe_directory": os.environ.get("CUDA_MPS_PIPE_DIRECTORY"),
        # How idle OpenMP threads wait (devices.openmp_wait_environment); None: the runtime's own.
        "openmp_wait": " ".join(
            f"{name}={os.environ[name]}" for name in OPENMP_WAIT_VARIABLES if name in os.environ
        )
        or None,
        "gpus": [d.to_dict() for d in devices if d.is_cuda],
    }
    env.update(torch_info())
    try:
        from gpubench.monitor import nvml

        env["nvml"] = nvml.environment_info()
    except Exception:  # monitoring is optional; the report says what is missing
        env["nvml"] = None
    driver = (env.get("nvml") or {}).get("nvidia_driver_version")
    env["driver"] = driver
    return env
