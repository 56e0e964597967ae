"""``--profile-ops``: torch.profiler around a worker's training of one round.

The worker exports the profiler's Chrome trace (torch's ``export_chrome_trace``) to a file in
the folder the harness gives, and hands its path back with the round's output; the trace
reader (:mod:`gpubench.report.trace`) merges its events into the run's trace under that
worker. The profiler records CPU operators (and, on CUDA, kernels, copies and the runtime
calls) of every thread of the process (a threaded mode's client threads too); no Python
stacks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def trace_file(directory: str, worker: int, n: int) -> str:
    """Where worker ``worker`` writes its ``n``-th profile of the round (a worker of a
    dynamic assignment is profiled once per client it is handed)."""
    return str(Path(directory) / f"worker{worker}-{n}.json")


def _all_threads() -> Any:
    """The profiler's setting that records every thread of the process, not just the one
    that started it (None where this torch has no such setting)."""
    import torch

    try:
        return torch._C._profiler._ExperimentalConfig(profile_all_threads=True)
    except (AttributeError, TypeError):
        return None


@contextlib.contextmanager
def op_profiler(path: str, cuda: bool) -> Iterator[None]:
    """Profile the block (CPU activity, and CUDA's on a GPU); its trace to ``path``."""
    from torch.profiler import ProfilerActivity, profile

    # Kineto's own log lines (e.g. no GPU to count on CPU slots) stay out of the run's output.
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with profile(activities=activities, experimental_config=_all_threads()) as prof:
        yield
    prof.export_chrome_trace(path)
