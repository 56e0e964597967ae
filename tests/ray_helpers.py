"""What the ray and flower tests share: finding Ray's processes, checking none is left, the
ray tests' run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil

from gpubench.config import RunConfig
from gpubench.modes.ray_common import is_ray_process
from tests.conftest import of_this_session, run_config


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
