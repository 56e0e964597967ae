"""Devices: CUDA GPUs, or CPU slots that stand in for them, and ``--devices`` parsing.

A CPU slot is a disjoint set of cores; a worker on it is pinned to those cores with as many
torch threads. Code above the device modules does not care which kind a device is. What a
device is lives here; which client goes where in ``assign``; pinning and a process's settings
in ``isolation``; the thin CUDA part (binding, synchronising, memory statistics) in ``cuda``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpubench.config import ConfigError
from gpubench.machine import cuda


@dataclass(frozen=True)
class Device:
    id: str  # "cpu:0" or "cuda:1" (the index as this process sees it)
    kind: str  # "cpu" or "cuda"
    index: int
    name: str
    cores: tuple[int, ...] = ()
    uuid: str | None = None
    pci_bus_id: str | None = None
    memory_total_bytes: int | None = None
    # What CUDA_VISIBLE_DEVICES must say for a worker to see exactly this GPU.
    visible_as: str | None = None

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "index": self.index,
            "name": self.name,
            "cores": list(self.cores),
            "uuid": self.uuid,
            "pci_bus_id": self.pci_bus_id,
            "memory_total_bytes": self.memory_total_bytes,
        }


@dataclass(frozen=True)
class DeviceSet:
    devices: tuple[Device, ...]
    all_devices: tuple[Device, ...]  # everything the run may watch (idle ones too)


def usable_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def split_cores(cores: Sequence[int], k: int) -> list[tuple[int, ...]]:
    """Split cores into k disjoint, contiguous, nearly equal slots."""
    n = len(cores)
    if k < 1 or k > n:
        raise ConfigError(f"cannot make {k} CPU slots from {n} usable cores")
    base, extra = divmod(n, k)
    slots, at = [], 0
    for i in range(k):
        size = base + (1 if i < extra else 0)
        slots.append(tuple(cores[at : at + size]))
        at += size
    return slots


def cpu_slots(k: int) -> tuple[Device, ...]:
    cores = usable_cores()
    if k > len(cores):
        raise ConfigError(
            f"--devices cpu:{k} asks for {k} CPU slots but this machine lets gpubench "
            f"use {len(cores)} core(s)"
        )
    return tuple(
        Device(id=f"cpu:{i}", kind="cpu", index=i, name=f"CPU slot {i}", cores=slot)
        for i, slot in enumerate(split_cores(cores, k))
    )


def _cuda_devices() -> tuple[Device, ...]:
    return tuple(
        Device(
            id=f"cuda:{gpu.index}",
            kind="cuda",
            index=gpu.index,
            name=gpu.name,
            uuid=gpu.uuid,
            pci_bus_id=gpu.pci_bus_id,
            memory_total_bytes=gpu.memory_total_bytes,
            visible_as=gpu.visible_as,
        )
        for gpu in cuda.visible_gpus()
    )


_SPEC = re.compile(r"auto|cpu(?::(\d+))?|cuda(?::(\d+(?:,\d+)*))?")


def resolve_devices(spec: str) -> DeviceSet:
    """``auto | cpu | cpu:K | cuda | cuda:0,1`` → the devices a run uses."""
    text = spec.strip().lower()
    m = _SPEC.fullmatch(text)
    if not m:
        raise ConfigError(
            f"--devices must be auto, cpu, cpu:K, cuda or cuda:I[,J...], got {spec!r}"
        )
    if text == "auto":
        gpus = _cuda_devices()
        if gpus:
            return DeviceSet(gpus, gpus)
        slots = cpu_slots(2 if len(usable_cores()) >= 2 else 1)
        return DeviceSet(slots, slots)
    if text.startswith("cpu"):
        k = int(m.group(1)) if m.group(1) else (2 if len(usable_cores()) >= 2 else 1)
        if k < 1:
            raise ConfigError("--devices cpu:K needs K >= 1")
        slots = cpu_slots(k)
        return DeviceSet(slots, slots)
    gpus = _cuda_devices()
    if not gpus:
        raise ConfigError(f"--devices {spec}: no CUDA GPU is visible to torch on this machine")
    if m.group(2) is None:
        return DeviceSet(gpus, gpus)
    wanted = [int(x) for x in m.group(2).split(",")]
    if len(set(wanted)) != len(wanted):
        raise ConfigError(f"--devices {spec} names a GPU twice")
    for w in wanted:
        if w >= len(gpus):
            raise ConfigError(
                f"--devices {spec}: there is no cuda:{w} ({len(gpus)} GPU(s) visible)"
            )
    return DeviceSet(tuple(gpus[w] for w in wanted), gpus)


def visible_entry(environ: Mapping[str, str] | None = None) -> str | None:
    """The first GPU this process was handed in ``CUDA_VISIBLE_DEVICES`` (an index, a
    ``GPU-``/``MIG-`` UUID or a prefix of one, as Ray and the user write it); None without."""
    env = os.environ if environ is None else environ
    first = env.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return first or None


def device_of_visible(entry: str | int | None, devices: Sequence[Device]) -> Device | None:
    """Which of the run's ``devices`` a process handed ``entry`` (what Ray's ``get_gpu_ids``
    or its ``CUDA_VISIBLE_DEVICES`` names) really uses; None when none of them matches.

    Workers' environments name GPUs as :attr:`Device.visible_as` does (a UUID where torch tells
    it, else the index the parent's ``CUDA_VISIBLE_DEVICES`` gave); CUDA also accepts a
    unique prefix of a UUID.
    """
    text = str(entry).strip() if entry is not None else ""
    gpus = [d for d in devices if d.is_cuda]
    if not text:
        return None
    for d in gpus:
        if text in (d.visible_as, d.uuid):
            return d
    if text.isdigit():
        same = [d for d in gpus if d.visible_as is None and str(d.index) == text]
        return same[0] if same else None
    if text.startswith(("GPU-", "MIG-")):
        by_prefix = [d for d in gpus if d.uuid and d.uuid.startswith(text)]
        return by_prefix[0] if len(by_prefix) == 1 else None
    return None


def torch_device_in_process(device: Device) -> str:
    """The torch device string for ``device`` inside the calling (parent) process."""
    return f"cuda:{device.index}" if device.is_cuda else "cpu"
