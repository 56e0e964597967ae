"""One Ray at a time under pytest-xdist, by the ``ray`` mark (a pytest plugin; tests/conftest.py
takes its hooks).

Two local Rays at once on two cores slow each other several-fold. The workers run a test
module at a time (``--dist loadfile`` in pyproject.toml, so that a module's shared fixtures
are made once); a test marked ``ray`` holds a lock that the workers of one test run share from
its setup to its teardown, so one worker waits while the other's Ray runs. xdist's own
``--dist loadgroup`` would send such tests to one worker, but it names a group by rewriting a
test's node id, which pytest 9 no longer reads (pytest-dev/pytest-xdist#1386): the group's
tests are spread over the workers as if unmarked.

What the lock cost is printed at the end of the run: how many ``ray`` tests waited, and how
long in all.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Generator
from pathlib import Path

import pytest

RAY_MARK = "ray"
WAITED = "ray_lock_wait_s"  # the user property a ray test's reports carry under xdist


def lock_path(config: pytest.Config) -> Path:
    """The file whose lock the workers of this test run share: beside the workers' own
    temporary folders (xdist gives each worker ``<the run's basetemp>/popen-gwN``)."""
    basetemp = config.getoption("basetemp", None)
    if basetemp:
        return Path(basetemp).parent / "ray.lock"
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getppid()))
    return Path(tempfile.gettempdir()) / f"gpubench-tests-ray-{run}.lock"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    # Outermost (tryfirst): the wait is not part of the test's own timeout.
    if "PYTEST_XDIST_WORKER" not in os.environ or item.get_closest_marker(RAY_MARK) is None:
        return (yield)
    fd = os.open(lock_path(item.config), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        start = time.monotonic()
        fcntl.flock(fd, fcntl.LOCK_EX)
        item.user_properties.append((WAITED, time.monotonic() - start))
        return (yield)
    finally:
        os.close(fd)  # and with it the lock


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    waits = [dict(report.user_properties)[WAITED]
             for reports in terminalreporter.stats.values() for report in reports
             if getattr(report, "when", None) == "setup"
             and WAITED in dict(getattr(report, "user_properties", ()))]
    if waits:
        waited = [w for w in waits if w >= 0.5]
        terminalreporter.write_line(
            f"ray lane: {len(waits)} tests marked ray, {len(waited)} waited for the other "
            f"worker's Ray, {sum(waits):.1f} s in all")
