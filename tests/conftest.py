from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "cases_for_tests.py"


def _is_helper(p: psutil.Process) -> bool:
    # multiprocessing's resource tracker lives as long as the test process, by design.
    try:
        return any("resource_tracker" in part for part in p.cmdline())
    except psutil.Error:
        return True


def _children() -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process().children(recursive=True) if not _is_helper(p)]
    except psutil.Error:
        return []


@pytest.fixture(autouse=True)
def no_orphan_processes():
    """Every test must leave no worker process behind."""
    before = {p.pid for p in _children()}
    yield
    deadline = time.monotonic() + 10
    left = [p for p in _children() if p.pid not in before]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    assert not left, f"processes outlived the test: {[(p.pid, p.name()) for p in left]}"


def run_cli(*args: str, timeout: float = 180, env: dict[str, str] | None = None):
    """Run the real CLI in a subprocess (as a user would)."""
    import subprocess

    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gpubench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=full_env,
    )


def has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    if has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


def wait_for_training(marks: Path, pids: set[int] | None = None, timeout: float = 120) -> int:
    """Block until a process (one of ``pids``, if given) has begun training the slow case;
    its pid. The slow case touches ``marks/<pid>`` on every batch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for f in marks.iterdir():
            if pids is None or int(f.name) in pids:
                return int(f.name)
        time.sleep(0.05)
    raise AssertionError("no process began training in time")


def spawned_workers(parent: psutil.Process | None = None) -> list[psutil.Process]:
    """The spawn-started worker processes under ``parent`` (default: this process)."""
    out = []
    for child in (parent or psutil.Process()).children(recursive=True):
        try:  # a child may end (or be a zombie) while it is looked at
            if "spawn_main" in " ".join(child.cmdline()):
                out.append(child)
        except psutil.Error:
            pass
    return out
