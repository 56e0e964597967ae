"""The ray lane under pytest-xdist (tests/lanes.py): two tests marked ``ray`` in two modules,
run by two workers, never run at the same time, and the end of the run says what waiting
cost."""

from __future__ import annotations

import os

import pytest

from tests.conftest import ROOT

pytest_plugins = ["pytester"]

# Each test notes that it is inside, waits (at most 3 s) for the other to be inside too, and
# writes down its worker and whether it met the other there.
_MODULE = """
import os, time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

def test_{me}(worker_id):
    here = Path(os.environ["LANE_DIR"])
    (here / "in-{me}").touch()
    deadline = time.monotonic() + 3
    while not (here / "in-{other}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    met = (here / "in-{other}").exists() and not (here / "out-{other}").exists()
    (here / "out-{me}").touch()
    (here / "{me}.txt").write_text(f"{{worker_id}} {{met}}")
"""


@pytest.mark.slow
def test_two_ray_tests_on_two_workers_take_turns(pytester: pytest.Pytester,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xdist")
    pytester.makeini("[pytest]\nmarkers =\n    ray: starts a local Ray\n")
    pytester.makepyfile(test_a=_MODULE.format(me="a", other="b"),
                        test_b=_MODULE.format(me="b", other="a"))
    lane = pytester.mkdir("lane")
    monkeypatch.setenv("LANE_DIR", str(lane))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    result = pytester.runpytest_subprocess("-p", "tests.lanes", "-n", "2", "--dist", "loadfile",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    seen = {me: (lane / f"{me}.txt").read_text().split() for me in "ab"}
    assert {seen["a"][0], seen["b"][0]} == {"gw0", "gw1"}  # one module on each worker
    assert seen["a"][1] == seen["b"][1] == "False"  # neither found the other inside
    result.stdout.fnmatch_lines(["ray lane: 2 tests marked ray, 1 waited for the other worker's"
                                 " Ray, * s in all"])
