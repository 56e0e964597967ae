"""Devices: CUDA GPUs, or CPU slots that stand in for them.

A CPU slot is a disjoint set of cores; a worker on it is pinned to those cores with as many
torch threads. Code above this module does not care which kind a device is. Everything that
is CUDA-specific (binding a worker to a GPU, synchronising before timestamps, the allocator's
memory statistics) lives here and stays thin.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpubench.config import ConfigError


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
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return ()
    if not torch.cuda.is_available():
        return ()
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
    has_visible = "CUDA_VISIBLE_DEVICES" in os.environ
    found = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        uuid = getattr(props, "uuid", None)
        uuid_text = f"GPU-{uuid}" if uuid is not None else None
        pci = None
        dom, bus, dev = (getattr(props, a, None) for a in ("pci_domain_id", "pci_bus_id", "pci_device_id"))
        if dom is not None and bus is not None and dev is not None:
            pci = f"{dom:08X}:{bus:02X}:{dev:02X}.0"
        if uuid_text:
            visible_as = uuid_text
        elif has_visible and i < len(visible):
            visible_as = visible[i]
        else:
            visible_as = None  # cannot isolate safely; the worker uses its index instead
        found.append(
            Device(
                id=f"cuda:{i}",
                kind="cuda",
                index=i,
                name=props.name,
                uuid=uuid_text,
                pci_bus_id=pci,
                memory_total_bytes=int(props.total_memory),
                visible_as=visible_as,
            )
        )
    return tuple(found)


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


# --- client assignment ----------------------------------------------------------------------


def assign_clients(work: Sequence[float], k: int, policy: str) -> list[int]:
    """Device index for each client.

    ``round-robin``: client_id % k (the usual hand-written scheme).
    ``balanced``: longest work first onto the least loaded device (LPT); ties go to the
    lower client id and the lower device index, so the result is deterministic.
    ``dynamic``: the process modes hand out clients at run time (see ``WorkerPool``); here,
    the schedule that gives on equally fast devices (clients in order, each onto the least
    loaded device), for modes that must place clients in advance and for predictions.
    """
    if k < 1:
        raise ValueError("need at least one device")
    if policy == "round-robin":
        return [i % k for i in range(len(work))]
    if policy in ("balanced", "dynamic"):
        # dynamic is decided at run time by whichever worker is free first; with equally fast
        # devices that is list scheduling in client order, which is what this returns.
        load = [0.0] * k
        out = [0] * len(work)
        order = range(len(work)) if policy == "dynamic" else sorted(
            range(len(work)), key=lambda c: (-work[c], c)
        )
        for client in order:
            dev = min(range(k), key=lambda d: (load[d], d))
            out[client] = dev
            load[dev] += work[client]
        return out
    raise ConfigError(f"unknown assignment policy {policy!r}")


# --- binding a worker to its device ----------------------------------------------------------


def worker_environment(device: Device) -> dict[str, str]:
    """Environment a worker process needs *before* torch initialises CUDA or its threads."""
    if device.is_cuda:
        return {
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "CUDA_VISIBLE_DEVICES": device.visible_as or str(device.index),
        }
    n = str(len(device.cores))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def bind_process(device: Device) -> str:
    """Bind the calling worker process to its device; returns the torch device string.

    Must run before CUDA initialises; called first thing in a worker.
    """
    os.environ.update(worker_environment(device))
    if device.is_cuda:
        return "cuda:0"
    _pin(device.cores)
    steady_host_allocator()
    import torch

    torch.set_num_threads(len(device.cores))
    return "cpu"


def steady_host_allocator() -> bool:
    """Keep freed host memory in the process instead of returning it to the OS (Linux/glibc).

    A GPU's memory sits behind torch's caching allocator, so a training step reuses the same
    blocks; on the CPU, glibc hands large blocks (a batch's activations) back to the kernel
    and every step page-faults them in again. That costs a core ~20% once both slots are busy
    (measured: cnn, 10 clients, batch 128 on two slots: multi-gpu 0.658 s → 0.545 s per round,
    serial 1.217 s → 1.043 s), which would make CPU slots scale worse than GPUs for a reason
    GPUs do not have. So processes on CPU slots keep their heap, like a caching allocator.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = mallopt(m_mmap_threshold, 32 * 1024 * 1024)  # glibc's largest: 32 MiB
    ok &= mallopt(m_trim_threshold, 1 << 30)
    ok &= mallopt(m_top_pad, 64 * 1024 * 1024)
    return bool(ok)


# libgomp's idle wait: how many times a thread with no work spins before it sleeps.
OPENMP_WAIT_VARIABLES = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")
OPENMP_SPIN_COUNT = 30000


def openmp_wait_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The OpenMP wait that processes should start with; empty if the user has chosen one.

    After a parallel region, libgomp's threads spin for 300,000 rounds (about 6 ms on this
    project's CPUs) before they sleep. Two processes that take turns on one CPU slot (the
    parent's serial round, then a worker's round) each lose those milliseconds to the other's
    spinning threads; a GPU has no such cost, since an idle process does not occupy it.
    Measured (mlp, 10 clients, batch 64, one slot of 2 cores, a worker and the parent taking
    turns): serial 41.1 -> 33.8 ms and the worker's round 36.9 -> 27.7 ms at 30,000 spins.
    Fewer spins make a busy process sleep and wake between its own parallel regions.

    Torch reads this when it loads OpenMP, so it must be in the environment before
    ``import torch`` (the command line sets it first thing; worker processes inherit it).
    """
    env = os.environ if environ is None else environ
    if any(name in env for name in OPENMP_WAIT_VARIABLES):
        return {}
    return {"GOMP_SPINCOUNT": str(OPENMP_SPIN_COUNT)}


def bound_openmp_wait() -> None:
    """Put :func:`openmp_wait_environment` into this process's environment, if torch has not
    loaded OpenMP yet (after that it would not apply here; children still inherit it)."""
    if "torch" not in sys.modules:
        os.environ.update(openmp_wait_environment())


@contextlib.contextmanager
def openmp_wait_for_children() -> Iterator[None]:
    """Processes started inside the block get :func:`openmp_wait_environment`."""
    extra = openmp_wait_environment()
    os.environ.update(extra)
    try:
        yield
    finally:
        for name in extra:
            os.environ.pop(name, None)


def _pin(cores: Sequence[int]) -> None:
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cores))


def torch_device_in_process(device: Device) -> str:
    """The torch device string for ``device`` inside the calling (parent) process."""
    return f"cuda:{device.index}" if device.is_cuda else "cpu"


@contextlib.contextmanager
def pinned_thread(device: Device) -> Iterator[None]:
    """Pin the calling thread to a CPU slot for the duration (no-op for a GPU).

    On Linux ``sched_setaffinity(0, …)`` applies to the calling thread only, so each thread of
    an in-process mode pins itself.
    """
    if device.is_cuda or not hasattr(os, "sched_getaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    _pin(device.cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def synchronize(torch_device: str) -> None:
    """Wait for queued kernels so that a timestamp means what it says."""
    if torch_device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(torch_device)


def reset_peak_memory(torch_device: str) -> None:
    if torch_device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(torch_device)


def peak_memory(torch_device: str) -> tuple[int | None, int | None]:
    """(max allocated, max reserved) bytes by torch's CUDA allocator; (None, None) on CPU."""
    if torch_device.startswith("cuda"):
        import torch

        return (
            int(torch.cuda.max_memory_allocated(torch_device)),
            int(torch.cuda.max_memory_reserved(torch_device)),
        )
    return None, None


def default_tolerance(devices: Sequence[Device]) -> float:
    """Largest max-abs difference from serial's FedAvg result still called "the same".

    CPU: 1e-5 (only thread-count dependent summation order differs; measured 0 to 3e-8).
    CUDA: 5e-4. PyTorch lets cuDNN convolutions use TF32 by default (10-bit mantissa), and
    cuDNN/cuBLAS pick kernels per process, thread and workspace, some accumulating with
    atomics; the same round in another process or thread then differs in the low bits, and
    SGD carries that over the local steps: measured on an H200 up to 1.5e-4 (cnn, batch 32).
    A real mistake is larger: leaving one client out of the default 10-client round moves
    the aggregate by 8e-4, leaving one untrained by 1.1e-3.
    """
    return 5e-4 if any(d.is_cuda for d in devices) else 1e-5
