"""Monitoring: what every device does while the modes run.

The harness creates one sampler for the whole run::

    sampler = create_sampler(devices, 0.1)          # every device the run can use
    sampler.start()
    sampler.mark("serial", PHASE_ROUND, 0)          # at every phase change
    sampler.watch_pids("serial", {os.getpid(): "cpu:0"})
    sampler.unwatch_pids("serial")                  # when the mode has closed
    sampler.stop()
    results.monitor = sampler.results_section()
    mode.device_stats = sampler.device_stats("serial")

Backends: NVML for CUDA devices (:mod:`gpubench.monitor.nvml`, the only importer of
``pynvml``), the host (psutil) for CPU slots or when NVML is not available.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from gpubench.machine.devices import Device
from gpubench.monitor import nvml
from gpubench.monitor.host import HostProbe
from gpubench.monitor.nvml_probe import NvmlProbe
from gpubench.monitor.probe import Probe, Reading
from gpubench.monitor.sampler import BUSY_THRESHOLD_PCT, Sampler
from gpubench.results import NOTE_HOST_CHOSEN, NOTE_HOST_INSTEAD, NOTE_NO_GPU

__all__ = [
    "BUSY_THRESHOLD_PCT",
    "Probe",
    "Reading",
    "Sampler",
    "create_sampler",
    "environment_info",
]

BACKENDS = ("auto", "nvml", "host")

environment_info = nvml.environment_info


def create_sampler(
    devices: Sequence[Device],
    interval_s: float,
    *,
    clock: Callable[[], float] = time.perf_counter,
    backend: str = "auto",
    wall: Callable[[], float] = time.time,
) -> Sampler:
    """A sampler (not started) for ``devices``.

    ``backend``: ``"nvml"`` (raises :class:`nvml.NvmlUnavailable` when NVML cannot be used),
    ``"host"``, or ``"auto"``: NVML when any device is a GPU and NVML works, else the host,
    with a note saying why.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown monitor backend {backend!r} (choose from {', '.join(BACKENDS)})")
    ids = [d.id for d in devices]
    any_gpu = any(d.is_cuda for d in devices)
    probe: Probe
    if backend == "nvml" or (backend == "auto" and any_gpu):
        try:
            probe = NvmlProbe(devices)
        except nvml.NvmlUnavailable as exc:
            if backend == "nvml":
                raise
            probe = HostProbe(devices, reason=f"{exc}{NOTE_HOST_INSTEAD}")
        return Sampler(ids, interval_s, probe, clock=clock, wall=wall)
    reason = None
    if any_gpu:
        reason = NOTE_HOST_CHOSEN
    elif backend == "auto":
        reason = NOTE_NO_GPU
    return Sampler(ids, interval_s, HostProbe(devices, reason=reason), clock=clock, wall=wall)
