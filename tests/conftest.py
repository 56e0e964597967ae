from __future__ import annotations

import contextlib
import dataclasses
import glob
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from gpubench.config import RunConfig, SampleSizes, TrainConfig

# One Ray at a time under pytest-xdist: the hooks of tests/lanes.py (tests marked ``ray``).
from tests.lanes import pytest_runtest_protocol, pytest_terminal_summary  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "cases_for_tests.py"

_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}

XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...: one of two workers

if XDIST_WORKER:
    # Two workers share two cores: torch's own work in each (outside the modes, which set
    # their threads by the slot) takes one thread, not two spinning against the other's.
    import torch

    torch.set_num_threads(1)

# Every process this test session starts inherits this mark, Ray's daemons too (even once
# they outlive their parent): processes of other test sessions on the machine do not count,
# nor those of another pytest-xdist worker of this session (each has a mark of its own).
SESSION_MARK = "GPUBENCH_TEST_SESSION" + (f"_{XDIST_WORKER}" if XDIST_WORKER else "")
os.environ.setdefault(SESSION_MARK, f"{os.getpid()}-{time.time_ns()}")


def of_this_session(p: psutil.Process) -> bool:
    """Whether ``p`` was started by this test session (it carries the session's mark)."""
    try:
        return p.environ().get(SESSION_MARK) == os.environ[SESSION_MARK]
    except psutil.Error:
        return False


def run_config(**fields: Any) -> RunConfig:
    """The tests' run: five mlp clients of 64 samples in batches of 32 (seed 3) on two CPU
    slots, no warm-up, one measured round, no monitoring. Any field of RunConfig or of
    TrainConfig may be given (they replace those of ``train=``, if given, else of the
    tests' own); ``samples`` as an int, a (low, high) pair or SampleSizes."""
    given = {k: fields.pop(k) for k in list(fields) if k in _TRAIN_FIELDS}
    samples = given.get("samples")
    if isinstance(samples, int):
        given["samples"] = SampleSizes(samples, samples)
    elif isinstance(samples, tuple):
        given["samples"] = SampleSizes(*samples)
    base = fields.pop("train", None) or TrainConfig(batch_size=32, samples=SampleSizes(64, 64),
                                                    seed=3)
    train = dataclasses.replace(base, **given)
    defaults: dict[str, Any] = dict(case="mlp", clients=5, devices="cpu:2", warmup=0, rounds=1,
                                    sample_interval_s=None)
    return RunConfig(**{**defaults, **fields, "train": train})


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


def _may_have_children() -> bool:
    """False only when Linux says this process has no child at all: then it has no descendant
    either, and the scan of every process on the machine that finding them takes is skipped."""
    lists = glob.glob(f"/proc/{os.getpid()}/task/*/children")
    try:
        return not lists or any(Path(f).read_text().strip() for f in lists)
    except OSError:
        return True


@pytest.fixture(autouse=True)
def no_orphan_processes():
    """Every test must leave no worker process behind."""
    before = {p.pid for p in _children()} if _may_have_children() else set()
    yield
    if not _may_have_children():
        return
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
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gpubench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=full_env,
    )


def cli_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """``gpubench ARGS`` run by this process, as :func:`run_cli` reports it: for what
    ``main`` decides before any work starts (bad input, exit 2), without a fresh interpreter
    and torch loaded again."""
    from gpubench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["gpubench", *args], code, out.getvalue(), err.getvalue())


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
