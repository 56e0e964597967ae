"""Options of the pytest-benchmark suite (``pytest bench_cases --benchmark-json out.json``)."""

from __future__ import annotations

import os

import pytest

from gpubench.config import DEFAULT_MODES


def _default_devices() -> str:
    # CPU slots by default, so the suite runs (and means the same) on any CI machine.
    return "cpu:2" if len(os.sched_getaffinity(0)) >= 2 else "cpu:1"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # The test suite runs on two pytest-xdist workers (pyproject's addopts); benchmarks time
    # one round at a time, with the machine to themselves, so never in parallel.
    if getattr(config.option, "numprocesses", None):
        config.option.numprocesses = 0
        config.option.dist = "no"
        config.option.tx = []


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("gpubench", "gpubench benchmark suite")
    g.addoption("--gpubench-cases", default="cnn", help="comma-separated cases (default cnn)")
    g.addoption("--gpubench-modes", default=",".join(DEFAULT_MODES), help="comma-separated modes")
    g.addoption(
        "--gpubench-devices",
        default=_default_devices(),
        help="devices spec as for gpubench compare --devices (default: 2 CPU slots)",
    )
    g.addoption("--gpubench-clients", type=int, default=4, help="clients per round (default 4)")
    g.addoption("--gpubench-samples", default="256", help="samples per client (default 256)")
    g.addoption("--gpubench-batch-size", type=int, default=64, help="batch size (default 64)")
    g.addoption("--gpubench-rounds", type=int, default=5, help="timed rounds (default 5)")
    g.addoption("--gpubench-warmup", type=int, default=1, help="warm-up rounds (default 1)")


def _names(config: pytest.Config, option: str) -> list[str]:
    return [n.strip() for n in str(config.getoption(option)).split(",") if n.strip()]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"gpubench_case", "gpubench_mode"} <= set(metafunc.fixturenames):
        pairs = [
            (case, mode)
            for case in _names(metafunc.config, "--gpubench-cases")
            for mode in _names(metafunc.config, "--gpubench-modes")
        ]
        metafunc.parametrize(
            ("gpubench_case", "gpubench_mode"), pairs, ids=[f"{c}-{m}" for c, m in pairs]
        )
