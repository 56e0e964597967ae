"""Keeping a run's processes and threads inside their device, and the process settings that
make a CPU slot behave like a GPU: pinning, torch/OpenMP threads, OpenMP's idle wait and the
host allocator.

Pinning uses ``sched_setaffinity``, which on Linux applies to one thread: a thread id (TID)
names it, 0 the calling thread. A thread inherits the affinity of the thread that starts it,
but threads that already exist (OpenMP's team, started by torch's first parallel operation)
keep theirs, so pinning a whole process means pinning each of its threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from gpubench.machine import cuda
from gpubench.machine.devices import Device


def worker_environment(device: Device, threads: int = 0) -> dict[str, str]:
    """Environment a worker process needs *before* torch initialises CUDA or its threads;
    ``threads``: a CUDA worker's share of the host's cores (0: no share set)."""
    if device.is_cuda:
        env = cuda.binding_environment(device.index, device.visible_as)
        if threads > 0:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        return env
    n = str(len(device.cores))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def cpu_share(workers: int, cores: int | None = None) -> int:
    """Threads for each of ``workers`` CUDA worker processes on this host: an equal share of
    its usable cores, at least one. Without it every worker's OpenMP team spans every core,
    and 16 workers on one GPU run 16 all-core teams on the host's CPUs."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


def bind_process(device: Device, threads: int = 0) -> str:
    """Bind the calling worker process to its device; returns the torch device string.
    ``threads``: a CUDA worker's share of the host's cores (:func:`cpu_share`).

    Must run before CUDA initialises; called first thing in a worker.
    """
    os.environ.update(worker_environment(device, threads))
    if device.is_cuda:
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        return cuda.BOUND_TORCH_DEVICE
    # The calling thread: threads it starts (torch's OpenMP team) inherit the slot; a host's
    # own threads (Ray's) stay where they are.
    if device.cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(device.cores))
    steady_host_allocator()
    import torch

    torch.set_num_threads(len(device.cores))
    return "cpu"


# The torch settings of a process that change a result or a speed; each worker reports its
# own, since a library caller's torch.set_float32_matmul_precision("high") or
# cudnn.benchmark = True reaches the parent's in-process modes but not a new process.
NUMERIC_SETTINGS = (
    "tf32_matmul", "tf32_cudnn", "cudnn_benchmark", "cudnn_deterministic",
    "float32_matmul_precision",
)


def process_settings() -> dict[str, Any]:
    """This process's :data:`NUMERIC_SETTINGS` and its torch thread count."""
    import torch

    return {
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "torch_threads": torch.get_num_threads(),
    }


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


def release_free_heap() -> bool:
    """Hand the heap's free memory back to the OS now (Linux/glibc ``malloc_trim``).

    What a step builds and frees (a probe model and its gradients, a mode's replicas) stays
    in the heap: glibc's threshold for trimming it grows with the blocks freed, and on CPU
    slots :func:`steady_host_allocator` keeps it on purpose. Called where the parent's work
    changes (after the checks before a run, after a mode closes), never inside a round.
    Measured (ResNet-18): the probe step leaves 128 MB of 856 MB resident; trimmed, 17 MB.
    """
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


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
    os.sched_setaffinity(0, set(device.cores))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# A thread can start while the threads are pinned one by one (an OpenMP team growing); a pass
# that finds no new thread ends the walk. Threads a pinned thread starts inherit its affinity.
_PIN_PASSES = 8


def process_threads() -> list[int]:
    """The kernel thread ids of every thread of this process; [] where /proc is missing."""
    try:
        return sorted(int(tid) for tid in os.listdir("/proc/self/task"))
    except (OSError, ValueError):
        return []


def pin_threads(cores: Collection[int], spare: Collection[int] = ()) -> dict[int, set[int]]:
    """Pin every thread of this process, except the TIDs in ``spare``, to ``cores``.

    Returns each pinned thread's affinity from before, for :func:`restore_threads`. Without
    /proc only the calling thread is pinned (under the key 0).
    """
    target = set(cores)
    before: dict[int, set[int]] = {}
    if not target or not hasattr(os, "sched_setaffinity"):
        return before
    if not process_threads():
        before[0] = os.sched_getaffinity(0)
        os.sched_setaffinity(0, target)
        return before
    for _ in range(_PIN_PASSES):
        new = [t for t in process_threads() if t not in before and t not in spare]
        if not new:
            break
        for tid in new:
            try:
                mask = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, target)
            except ProcessLookupError:  # the thread ended meanwhile
                continue
            before[tid] = mask
    return before


def restore_threads(
    before: Mapping[int, set[int]], default: set[int], spare: Collection[int] = ()
) -> None:
    """Give each thread its affinity from ``before``; threads started since get ``default``."""
    if not hasattr(os, "sched_setaffinity"):
        return
    if 0 in before:
        os.sched_setaffinity(0, before[0])
        return
    for tid in process_threads():
        if tid in spare:
            continue
        try:
            os.sched_setaffinity(tid, before.get(tid, default))
        except ProcessLookupError:
            continue


@contextlib.contextmanager
def pin_in_process(device: Device, spare: Collection[int] = ()) -> Iterator[None]:
    """Run the block with every thread of this process on a CPU slot's cores (no-op on a GPU).

    For the modes that train in the parent process (serial, threaded, vectorized on device 0):
    their Python threads and torch's OpenMP team, including the team threads that existed
    before, then compete for the slot's cores only, as a worker process pinned to the slot
    does. ``spare`` lists TIDs to leave alone (a sampler thread that is not the mode's work;
    ``threading.Thread.native_id``). On exit every thread gets its affinity back; threads
    started inside the block get the one the calling thread had before.
    """
    if device.is_cuda or not device.cores or not hasattr(os, "sched_getaffinity"):
        yield
        return
    default = os.sched_getaffinity(0)
    before = pin_threads(device.cores, spare)
    try:
        yield
    finally:
        restore_threads(before, default, spare)
