"""Disturbed round sets measured again: an interleaved set whose round ran beside other
programs' load is run again after the others, at most as many extra sets as measured rounds,
and the results say which sets were replaced and why. A monitor that reports other load per
span stands in for the sampler; the modes train for real (serial's training)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gpubench.monitor.timeline import OtherLoadStats
from gpubench.results import OTHER_LOAD_LIMIT_PCT, PHASE_REPLACED, PHASE_ROUND, PHASE_WARMUP
from gpubench.run.harness import compare
from tests.conftest import run_config
from tests.fake_modes import Script, calls, register


class LoadedMonitor:
    """Spans as the sampler keeps them; ``busy(mode, phase, index, nth)`` says the other load
    (%) on every device during the ``nth`` time that mode's round ``index`` of that phase
    (warm-up or measured) ran."""

    def __init__(self, busy: Callable[[str, str, int, int], float]) -> None:
        self.busy = busy
        self.spans: list[dict[str, Any]] = []
        self.seen: dict[tuple[str, int], int] = {}

    def factory(self, devices: Sequence[Any], interval_s: float) -> LoadedMonitor:
        self.devices = [d.id for d in devices]
        return self

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def watch_pids(self, mode: str, pids: Any) -> None: ...
    def unwatch_pids(self, mode: str) -> None: ...

    def mark(self, mode: str | None, phase: str, round_index: int | None) -> int:
        load = 0.0
        if phase in (PHASE_ROUND, PHASE_WARMUP) and mode is not None and round_index is not None:
            nth = self.seen.get((mode, phase, round_index), 0)
            self.seen[(mode, phase, round_index)] = nth + 1
            load = self.busy(mode, phase, round_index, nth)
        self.spans.append({"mode": mode, "phase": phase, "round": round_index, "load": load})
        return len(self.spans) - 1

    def retag(self, span: int, phase: str) -> None:
        self.spans[span]["phase"] = phase

    def other_load(self, span: int) -> dict[str, float | None]:
        return dict.fromkeys(self.devices, self.spans[span]["load"])

    def mode_other_load(self, mode: str, devices: Sequence[str]) -> OtherLoadStats:
        loads = [s["load"] for s in self.spans if s["mode"] == mode and s["phase"] == PHASE_ROUND]
        mean = sum(loads) / len(loads) if loads else 0.0
        return OtherLoadStats(dict.fromkeys(devices, mean), ())

    def results_section(self) -> dict[str, Any]:
        return {}

    def device_stats(self, mode: str) -> tuple[Any, ...]:
        return ()


def rounds_run(mode: str) -> list[int]:
    return [step for _, call, step in calls(mode) if call == "round"]


def test_a_disturbed_set_is_measured_again_after_the_others(monkeypatch) -> None:
    (a,) = register(monkeypatch, a=Script())
    # the hog ran during the first measured set only (a's round 0, its first time)
    monitor = LoadedMonitor(
        lambda mode, phase, i, nth: 80.0 if (mode, phase, i, nth) == (a, PHASE_ROUND, 0, 0)
        else 1.0)
    results = compare(run_config(modes=("serial", a), warmup=1, rounds=3, interleave=True,
                                 sample_interval_s=0.1), sampler_factory=monitor.factory)
    # steps 0 (warm-up), 1, 2, 3, then step 1 once more
    assert rounds_run(a) == [0, 1, 2, 3, 4]
    sets = results.config.remeasured_sets
    assert sets is not None and len(sets) == 1
    (entry,) = sets
    assert entry["step"] == 1 and f"80% of cpu:0 during {a}'s round" in entry["reason"]
    assert set(entry["time_s"]) == {"serial", a} and entry["other_load_pct"][a]["cpu:0"] == 80.0
    mode = results.mode(a)
    assert mode is not None and mode.status == "ok" and mode.same_result is True
    assert len(mode.round_times_s) == 3  # the replaced round counts no more
    assert all(r.other_load_pct == {"cpu:0": 1.0} for r in mode.rounds if not r.warmup)
    assert [r.index for r in mode.rounds] == [0, 1, 2, 3]  # in step order
    replaced = [s for s in monitor.spans if s["phase"] == PHASE_REPLACED]
    assert {s["mode"] for s in replaced} == {"serial", a}
    assert mode.other_load_pct == {"cpu:0": 1.0}
    assert results.disturbance(a) is None


def test_at_most_as_many_extra_sets_as_measured_rounds_then_kept(monkeypatch) -> None:
    (a,) = register(monkeypatch, a=Script())
    monitor = LoadedMonitor(lambda *_: 50.0)  # a neighbour for the whole run
    results = compare(run_config(modes=("serial", a), warmup=0, rounds=2, interleave=True,
                                 sample_interval_s=0.1), sampler_factory=monitor.factory)
    assert len(rounds_run(a)) == 2 + 2  # two extra sets, no more
    sets = results.config.remeasured_sets or ()
    assert sum(1 for s in sets if not s.get("kept")) == 2
    assert [s["step"] for s in sets if s.get("kept")] == [0, 1]
    d = results.disturbance(a)
    assert d is not None and d.pct == 50.0  # still disturbed: the verdict says so


def test_warmup_rounds_and_quiet_sets_are_not_measured_again(monkeypatch) -> None:
    (a,) = register(monkeypatch, a=Script())
    limit = OTHER_LOAD_LIMIT_PCT
    # a neighbour during the warm-up round only; the measured ones at the limit: quiet
    monitor = LoadedMonitor(lambda mode, phase, i, nth: 90.0 if phase == PHASE_WARMUP else limit)
    results = compare(run_config(modes=("serial", a), warmup=1, rounds=2, interleave=True,
                                 sample_interval_s=0.1), sampler_factory=monitor.factory)
    assert rounds_run(a) == [0, 1, 2]
    assert not results.config.remeasured_sets
