"""A worker process, Ray actor or Flower client killed in the middle of a measured round fails
only its mode, within seconds, and leaves no process behind; serial still runs."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from gpubench.run.harness import compare
from tests.conftest import CASES, of_this_session, run_config, spawned_workers, wait_for_training
from tests.ray_helpers import named_descendants, no_ray_process_left

# mode -> (what it needs installed, its processes that train clients, what its error says)
VICTIMS: dict[str, tuple[tuple[str, ...], Callable[[], list[psutil.Process]], tuple[str, ...]]] = {
    "multi-gpu": ((), spawned_workers, ("died with signal SIGKILL",)),
    "ray": (("ray",), lambda: named_descendants("ray::RayWorker"), ("ray actor", "died")),
    "flower": (("flwr", "ray"), lambda: named_descendants("ray::ClientAppActor"),
               ("Flower client failed",)),
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", [pytest.param(m, marks=pytest.mark.ray) if needs else m
                                  for m, (needs, _, _) in VICTIMS.items()])
def test_a_killed_worker_fails_only_its_mode_within_seconds(mode: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch):
    needs, victims_of, error_words = VICTIMS[mode]
    for module in needs:
        pytest.importorskip(module)
    config = run_config(
        case=f"{CASES}:slow_case", modes=(mode, "serial"), clients=4,
        # One slot: one worker (actor, Flower client) trains 4 clients x 12 batches of 50 ms,
        # a round that outlasts a slow machine's kill.
        devices="cpu:1", batch_size=8, samples=96,
    )
    # The slow case touches <marks>/<pid> on every batch: a victim is killed once it trains.
    monkeypatch.setenv("GPUBENCH_TEST_MARKS", str(tmp_path))
    seen: dict[str, float] = {}
    problems: list[str] = []

    def kill_once_training() -> None:
        try:
            # Its processes are up (the round began), but a Ray worker's title (by which it is
            # found) may still be changing to its actor's.
            deadline = time.monotonic() + 30
            while not (found := victims_of()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert found, f"no {mode} process to kill"
            # what tells this session's processes (and leftovers) from other sessions'
            assert all(of_this_session(p) for p in found)
            victims = {p.pid for p in found}
            victim = wait_for_training(tmp_path, victims)
            os.kill(victim, signal.SIGKILL)
            seen["killed"] = time.monotonic()
        except BaseException as exc:  # the test fails with it below, not a stray thread
            problems.append(repr(exc))

    def progress(name: str, phase: str, index: int, total: int) -> None:
        if name == mode and phase == "round" and "thread" not in seen:
            seen["thread"] = 1.0
            threading.Thread(target=kill_once_training, daemon=True).start()
        if name == mode and phase == "failed":
            seen["failed"] = time.monotonic()

    with no_ray_process_left(f"the {mode} run"):
        results = compare(config, progress=progress)
    assert not problems, problems
    killed, serial = results.mode(mode), results.mode("serial")
    assert killed is not None and serial is not None
    assert killed.status == "failed", killed
    assert all(w in (killed.error or "") for w in error_words), killed.error
    assert seen["failed"] - seen["killed"] < 10
    assert serial.status == "ok" and serial.round_times_s
