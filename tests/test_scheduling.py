"""The harness's schedule with scripted in-process modes and a fake clock: which mode is asked
what and when, in turn or one after another; a failure, a refusal or Ctrl-C in one mode keeps
the others' results; every mode that was started is closed."""

from __future__ import annotations

import pytest

from gpubench.run.harness import compare
from tests import fake_modes
from tests.conftest import run_config
from tests.fake_modes import Script, calls, register


def steps(mode: str) -> list[int]:
    return [step for _, call, step in calls(mode) if call == "round"]


def test_one_mode_after_another_each_starts_runs_its_rounds_and_closes(monkeypatch):
    a, b = register(monkeypatch, a=Script(), b=Script())
    results = compare(run_config(modes=("serial", a, b), warmup=1, rounds=2, interleave=False))
    assert calls() == [
        (a, "start", -1), (a, "round", 0), (a, "round", 1), (a, "round", 2), (a, "close", -1),
        (b, "start", -1), (b, "round", 0), (b, "round", 1), (b, "round", 2), (b, "close", -1),
    ]
    for name in (a, b):
        mode = results.mode(name)
        assert mode is not None and mode.status == "ok", mode and mode.error
        assert len(mode.warmup_times_s) == 1 and len(mode.round_times_s) == 2
        assert mode.same_result is True


def test_interleaved_modes_start_together_take_turns_each_round_then_close(monkeypatch):
    a, b = register(monkeypatch, a=Script(), b=Script())
    stamps: list[tuple[str, str, int]] = []
    results = compare(run_config(modes=(a, "serial", b), warmup=1, rounds=2, interleave=True),
                      progress=lambda m, ph, i, t, **_: stamps.append((m, ph, i)))
    assert calls() == [
        (a, "start", -1), (b, "start", -1),
        (a, "round", 0), (b, "round", 0), (a, "round", 1), (b, "round", 1),
        (a, "round", 2), (b, "round", 2),
        (a, "close", -1), (b, "close", -1),
    ]
    turns = [(m, ph, i) for m, ph, i in stamps if ph in ("warmup", "round")]
    assert turns == [(m, ph, i) for ph, i in (("warmup", 1), ("round", 1), ("round", 2))
                     for m in (a, "serial", b)]
    # a ran before serial in every round and is still compared with serial's result
    assert all(m.status == "ok" and m.same_result is True for m in results.modes)


def test_a_mode_that_fails_in_a_round_is_asked_no_more_and_the_others_finish(monkeypatch):
    dies, lives = register(monkeypatch, dies=Script(round_fails=1), lives=Script())
    results = compare(run_config(modes=("serial", dies, lives), rounds=3, interleave=True))
    assert steps(dies) == [0, 1] and steps(lives) == [0, 1, 2]
    assert calls(dies)[-1] == (dies, "close", -1)
    failed = results.mode(dies)
    assert failed is not None and failed.status == "failed"
    assert "died with signal SIGKILL" in (failed.error or "")
    assert "Traceback" in (failed.error_detail or "")
    for name in ("serial", lives):
        mode = results.mode(name)
        assert mode is not None and mode.status == "ok" and len(mode.round_times_s) == 3


@pytest.mark.parametrize("script, status, reason", [
    (Script(start_fails="no worker started: out of shared memory"), "failed",
     "no worker started: out of shared memory"),
    (Script(not_applicable="needs a GPU"), "not_applicable", "needs a GPU"),
])
def test_a_mode_that_cannot_start_gets_no_round_and_the_others_run(monkeypatch, script,
                                                                   status, reason):
    (refused,) = register(monkeypatch, refused=script)
    results = compare(run_config(modes=(refused, "serial"), rounds=2, interleave=True))
    assert steps(refused) == []
    mode, serial = results.mode(refused), results.mode("serial")
    assert mode is not None and mode.status == status and mode.error == reason
    assert mode.round_times_s == () and mode.speedup_vs_serial is None
    assert serial is not None and serial.status == "ok" and len(serial.round_times_s) == 2


def test_ctrl_c_in_a_round_keeps_what_was_measured_and_closes_every_mode(monkeypatch):
    first, hit = register(monkeypatch, first=Script(), hit=Script(round_interrupted=1))
    results = compare(run_config(modes=(first, hit), rounds=3, interleave=True))
    assert results.interrupted is True
    assert steps(first) == [0, 1] and steps(hit) == [0, 1]  # nothing after Ctrl-C
    assert {m for m, call, _ in calls() if call == "close"} == {first, hit}
    done = results.mode(first)
    assert done is not None and done.status == "failed" and "Ctrl-C" in (done.error or "")
    assert len(done.round_times_s) == 2  # its rounds before Ctrl-C are kept


def test_a_round_that_leaves_a_client_out_fails_its_mode_naming_the_client(monkeypatch):
    (short,) = register(monkeypatch, short=Script(drops_client=3))
    results = compare(run_config(modes=("serial", short)))
    mode = results.mode(short)
    assert mode is not None and mode.status == "failed"
    assert mode.error == "round 1: client 3 was not trained"
    assert results.mode("serial").status == "ok"  # type: ignore[union-attr]


def test_the_clock_times_cold_start_and_rounds_of_each_mode_and_gives_the_speedup(monkeypatch):
    # Every reading advances the clock by the running mode's step (3 s, 1 s): every timed span
    # is one step, so the fast mode's speedup over serial is exactly 3.
    fast, slow = register(monkeypatch, fast=Script(), slow=Script())
    step = {"serial": 3.0, fast: 1.0, slow: 6.0}
    now = {"mode": "serial", "t": 0.0}

    def progress(mode: str, phase: str, index: int, total: int, **_: object) -> None:
        now["mode"] = mode

    def clock() -> float:
        now["t"] += step[now["mode"]]
        return now["t"]

    results = compare(run_config(modes=("serial", fast, slow), warmup=1, rounds=2,
                                 interleave=True), clock=clock, progress=progress)
    for name, seconds in step.items():
        mode = results.mode(name)
        assert mode is not None and mode.status == "ok", mode and mode.error
        assert mode.cold_start_s == seconds
        assert mode.warmup_times_s == (seconds,) and mode.round_times_s == (seconds, seconds)
        assert all(r.aggregate_s == seconds for r in mode.rounds)
    assert results.mode(fast).speedup_vs_serial == pytest.approx(3.0)  # type: ignore[union-attr]
    assert results.mode(slow).speedup_vs_serial == pytest.approx(0.5)  # type: ignore[union-attr]


def test_scripted_modes_are_registered_only_for_their_test():
    from gpubench.modes import REGISTRY

    assert not [name for name in REGISTRY if name.startswith("fake-")]
    assert not hasattr(fake_modes, "Fake_a")
