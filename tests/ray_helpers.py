"""What the ray and flower tests share: finding Ray's processes, checking none is left, and
the one real run of ray and flower that several of them read."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil

from gpubench.config import RunConfig
from gpubench.modes.ray_common import is_ray_process
from gpubench.monitor.timeline import OtherLoadStats
from gpubench.results import Results
from gpubench.run.harness import compare
from tests.conftest import CASES, of_this_session, run_config


def ray_processes() -> list[psutil.Process]:
    """This test session's live Ray processes (other sessions may run Ray meanwhile)."""
    found = []
    for p in psutil.process_iter():
        try:
            if (is_ray_process(p.name(), p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE
                    and of_this_session(p)):
                found.append(p)
        except psutil.Error:
            continue
    return found


def new_ray_processes(before: set[int], wait_s: float = 10.0) -> list[str]:
    """Ray processes that appeared since ``before`` and are still there after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        left = [p for p in ray_processes() if p.pid not in before]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    out = []
    for p in left:
        try:
            out.append(f"{p.pid} {p.name()}")
        except psutil.Error:
            continue
    return out


@contextmanager
def no_ray_process_left(what: str = "the test") -> Iterator[None]:
    """Fails if a Ray process that appeared inside the block outlives it (by 10 s)."""
    before = {p.pid for p in ray_processes()}
    yield
    left = new_ray_processes(before)
    assert not left, f"Ray processes outlived {what}: {left}"


def named_descendants(prefix: str) -> list[psutil.Process]:
    """Processes under this one whose title starts with ``prefix`` (Ray actors: ``ray::Name``)."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.name().startswith(prefix) or " ".join(p.cmdline()).startswith(prefix):
                found.append(p)
        except psutil.Error:
            continue
    return found


def small(**kw: Any) -> RunConfig:
    """The ray tests' run: the tests' run (five mlp clients, two CPU slots) with serial and
    ray, two rounds."""
    return run_config(**{"modes": ("serial", "ray"), "rounds": 2, **kw})


class AffinityWatcher:
    """A monitor that, when the harness hands it a mode's processes, reads each one's CPU
    affinity there and then (the processes are alive and about to train)."""

    def __init__(self, devices: Any, interval_s: float) -> None:
        self.seen: dict[str, dict[int, tuple[str, set[int]]]] = {}

    def start(self) -> None: ...
    def mark(self, mode: str | None, phase: str, round_index: int | None) -> None: ...
    def retag(self, span: int, phase: str) -> None: ...
    def unwatch_pids(self, mode: str) -> None: ...

    def other_load(self, span: int) -> dict[str, float | None]:
        return {}

    def mode_other_load(self, mode: str, devices: Any) -> OtherLoadStats:
        return OtherLoadStats({}, ())
    def stop(self) -> None: ...

    def results_section(self) -> dict[str, Any]:
        return {}

    def device_stats(self, mode: str) -> tuple[Any, ...]:
        return ()

    def watch_pids(self, mode: str, pids: Any) -> None:
        self.seen[mode] = {pid: (dev, set(psutil.Process(pid).cpu_affinity()))
                           for pid, dev in pids.items()}


def ray_and_flower() -> tuple[Results, dict[str, dict[int, tuple[str, set[int]]]]]:
    """serial, ray and flower on the dropout case: four clients of unequal sizes (48 to 80
    samples), a warm-up and two rounds, one serial run (not one beside each); with the
    affinity of every process the monitor was handed, and no Ray process left after it."""
    watchers: list[AffinityWatcher] = []

    def watcher(devices: Any, interval_s: float) -> AffinityWatcher:
        watchers.append(AffinityWatcher(devices, interval_s))
        return watchers[-1]

    config = run_config(case=f"{CASES}:dropout_case", clients=4, samples=(48, 80), seed=5,
                        modes=("serial", "ray", "flower"), warmup=1, rounds=2,
                        interleave=False, sample_interval_s=0.1)
    with no_ray_process_left("the ray and flower run"):
        results = compare(config, sampler_factory=watcher)
    (seen,) = [w.seen for w in watchers]
    return results, seen
