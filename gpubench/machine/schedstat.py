"""How long a client's training threads waited for a CPU: the kernel's per-thread scheduler
statistics.

``/proc/<pid>/task/<tid>/schedstat`` holds three numbers per thread: nanoseconds on a CPU,
nanoseconds runnable but waiting on a run queue, and time slices run. The second, read before
and after a client's training, is its ``wait_s``: the time its threads were ready and a CPU
(the slot's cores, shared with the other processes on it) was not.

Which threads count:

- a worker process (multiprocess, multi-gpu, ...) trains one client at a time, so every
  thread of the process counts, torch's intra-op (OpenMP) threads included
  (:func:`count_whole_process`, called once by the worker);
- in the calling process (serial, threaded, streams, ...), only the thread that trains the
  client: torch's intra-op OpenMP threads are shared by every client training in the process
  at once and cannot be told apart, so they are not counted. With one intra-op thread (a
  one-core slot, ``--torch-threads 1``) the training thread does the compute itself.

On CUDA this is the host threads' waiting only; a kernel waiting for the GPU does not show.
Where the file does not exist (not Linux, no schedstats), nothing is measured (None).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

_TASKS = Path("/proc/self/task")
_whole_process = False


def count_whole_process() -> None:
    """Count every thread of this process as the client's (a worker process)."""
    global _whole_process
    _whole_process = True


# An open file per thread read: reading it again costs a pread (about 1 us) where opening it
# each time costs 20 us, which would add up to a share of a short client's time.
_files: dict[str, int] = {}


def _read_wait_ns(tid: str) -> int | None:
    try:
        fd = _files.get(tid)
        if fd is None:
            fd = _files[tid] = os.open(_TASKS / tid / "schedstat", os.O_RDONLY)
        return int(os.pread(fd, 128, 0).split()[1])
    except (OSError, IndexError, ValueError):  # ended, no schedstats, not Linux
        if (fd := _files.pop(tid, None)) is not None:
            os.close(fd)
        return None


def waiting_ns() -> dict[str, int] | None:
    """Run-queue delay so far per counted thread of this process (None: not available)."""
    if _whole_process:
        try:
            tids = os.listdir(_TASKS)
        except OSError:
            return None
    else:
        tids = [str(threading.get_native_id())]
    got = {tid: ns for tid in tids if (ns := _read_wait_ns(tid)) is not None}
    return got or None


def start_waiting() -> Callable[[], float | None]:
    """Start measuring; the function returned gives the seconds waited since (None when the
    statistics are not available). A thread that started in between counts from zero; one
    that ended in between is lost (its waiting is no longer readable)."""
    before = waiting_ns()

    def waited() -> float | None:
        after = waiting_ns()
        if before is None or after is None:
            return None
        return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9

    return waited
