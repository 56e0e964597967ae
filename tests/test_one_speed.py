"""One speed measure: ``Results.speed`` is the ratio, interval and judgement every reader shows.

The run below is interleaved, and its rounds are crafted so that the paired measure (the
median of the per-round ratios) and the ratio of the median rounds disagree in value and in
verdict: threaded runs 0.85x of its own round's serial in 16 of 20 rounds while serial's
times drift from 1 s to 16 s, and 4 rounds are far faster. Paired, threads are clearly slower
(0.85x, the whole interval below ``stats.SLOWER``); as a ratio of medians they would be
1.37x. A reader that computed its own ratio, read the recorded figure, or judged with a
threshold of its own would show something else.
"""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gpubench import stats
from gpubench.faq.verdicts import threads_part
from gpubench.findings import base as findings
from gpubench.findings import compute_findings
from gpubench.findings.scaling import repaid
from gpubench.gate.checks import Expectation
from gpubench.gate.verdicts import FAIL, PASS
from gpubench.history.entries import entry_of
from gpubench.report import measures
from gpubench.report.i18n import text
from gpubench.report.plots import speedup_bars
from gpubench.report.tables import format_summary_table, speed_cell, verdict_cell
from gpubench.results import ModeResult, Results, median
from gpubench.run.explain import suspects
from gpubench.run.sweep import _mode_row
from tests.test_phases import FakePrepared, _parse

SERIAL_S = tuple(float(i) for i in range(1, 17)) + (20.0,) * 4
THREADED_S = tuple(round(s / 0.85, 4) for s in SERIAL_S[:16]) + (0.5,) * 4
PAIRED = 0.85  # the median of the per-round ratios
OF_MEDIANS = median(SERIAL_S) / median(THREADED_S)  # 1.37: what a reader must not show


def _mode(name: str, times: tuple[float, ...], **kw: Any) -> ModeResult:
    return ModeResult(name, "ok", devices=("cpu:0",), workers=kw.pop("workers", 1),
                      round_times_s=times, same_result=True, **kw)


def _run(recorded: float | None = 9.9, interleave: bool = True) -> Results:
    """The crafted run; threaded's recorded ``speedup_vs_serial`` is a decoy."""
    return Results({}, {"case": "cnn", "interleave": interleave, "device_ids": ["cpu:0"],
                        "samples": [100, 100], "clients": 2},
                   (_mode("serial", SERIAL_S, cold_start_s=0.1),
                    _mode("threaded", THREADED_S, workers=2, cold_start_s=5.0,
                          speedup_vs_serial=recorded)))


def test_the_crafted_rounds_tell_the_two_measures_apart() -> None:
    assert OF_MEDIANS > 1.3
    assert stats.speedup(stats.Rounds.of(SERIAL_S, THREADED_S)) == pytest.approx(OF_MEDIANS)


def test_results_speed_is_the_paired_measure_with_its_interval_and_rounds() -> None:
    run = _run()
    speed = run.speed("threaded")
    assert speed is not None and speed.mode == "threaded"
    assert speed.ratio == pytest.approx(PAIRED, rel=1e-4)
    assert speed.paired and speed.rounds.size == len(SERIAL_S)
    assert speed.rounds.reference == SERIAL_S and speed.rounds.candidate == THREADED_S
    assert speed.low is not None and speed.high is not None
    assert speed.low <= speed.ratio <= speed.high < stats.SLOWER
    assert speed.slower and not speed.faster
    # the same rounds read as a sequential run: the ratio of medians, no verdict
    sequential = _run(interleave=False).speed("threaded")
    assert sequential is not None and not sequential.paired
    assert sequential.ratio == pytest.approx(OF_MEDIANS)
    assert not sequential.slower and not sequential.faster
    assert run.speed("missing") is None
    assert _run().with_modes((run.modes[1],)).speed("threaded") is None  # no serial


def test_speed_at_another_level_and_against_other_limits() -> None:
    speed = _run().speed("threaded")
    assert speed is not None
    assert speed.at(stats.DEFAULT_LEVEL) is speed.interval
    wider = speed.at(0.999)
    assert wider.estimate == speed.ratio and wider.level == 0.999
    assert speed.check(at_most=stats.SLOWER).holds
    assert speed.check(at_least=1.0).outcome == stats.BEYOND


def test_every_reader_shows_the_one_figure() -> None:
    run = _run()
    threaded = run.modes[1]
    speed = run.speed("threaded")
    assert speed is not None
    figure = f"{speed.ratio:.2f}x"
    assert figure == "0.85x"

    view = measures.speed_of(run, threaded)
    assert view.estimate == speed.ratio and view.interval == speed.interval and view.paired
    assert speed_cell(run, threaded).startswith(figure)
    assert f" {figure} " in format_summary_table(run)
    (bar,) = [b for b in speedup_bars(run) if b.mode == "threaded"]
    assert (bar.value, bar.low, bar.high) == (speed.ratio, speed.low, speed.high)

    assert findings.speedup(run, threaded) == speed.ratio
    entry = entry_of(run, threaded, "run-1")
    assert (entry.speedup, entry.low, entry.high) == (speed.ratio, speed.low, speed.high)
    assert entry.paired and entry.rounds == speed.rounds.size

    gate = Expectation("threaded", max_speedup=stats.SLOWER).evaluate(run)
    assert gate.verdict == PASS and gate.speedup == speed.interval and gate.paired
    part = threads_part(run)
    assert part.interval == speed.interval

    saved = run.with_speedups()
    assert [m.speedup_vs_serial for m in saved.modes] == [1.0, speed.ratio]
    assert _mode_row(run, threaded).speedup_vs_serial == speed.ratio


def test_every_reader_judges_with_the_one_threshold() -> None:
    run = _run()
    threaded = run.modes[1]
    assert measures.speed_of(run, threaded).verdict == measures.SLOWER_V
    assert verdict_cell(run, threaded, "en") == text("verdict.speed.slower", "en")
    assert findings.clearly(run, threaded, at_most=stats.SLOWER)
    found = [f for f in compute_findings(run) if f.code == "threads-slower"]
    assert len(found) == 1 and found[0].facts["versus"]["speedup"] == pytest.approx(PAIRED,
                                                                                  rel=1e-4)
    assert Expectation("threaded", min_speedup=1.0).evaluate(run).verdict == FAIL
    # a speed judged on the ratio of medians would be no slower: every reader agrees
    sequential = _run(interleave=False)
    assert measures.speed_of(sequential, sequential.modes[1]).verdict == measures.NO_DIFFERENCE
    assert not [f for f in compute_findings(sequential) if f.code == "threads-slower"]


def test_a_cold_start_is_repaid_at_the_one_speed() -> None:
    # paired, threads lose 0.85x of a round: their longer start-up is never won back; at the
    # ratio of medians they would win 1.37x and repay it after a few rounds
    run = _run()
    assert repaid(run, run.modes[1]) == {"variant": "never"}
    sequential = _run(interleave=False)
    facts = repaid(sequential, sequential.modes[1])
    assert facts is not None and facts["variant"] == "after"
    gain = median(SERIAL_S) * (1 - 1 / OF_MEDIANS)
    assert facts["rounds"] == -(-(5.0 - 0.1) // gain)


def test_the_counterfactual_runs_start_when_the_one_speed_is_below_slower() -> None:
    prepared = FakePrepared(_parse("--workers", "2"))
    # paired 0.85x: threads lost, so the settings are tried (the ratio of medians, 1.37x, no)
    assert suspects(_run(), prepared) == [("torch_threads", 1)]  # type: ignore[arg-type]
    assert suspects(_run(interleave=False), prepared) == []  # type: ignore[arg-type]


def test_the_recorded_figure_is_used_only_without_rounds() -> None:
    run = _run(recorded=9.9)
    bare = replace(run.modes[1], round_times_s=())
    without = run.with_modes((run.modes[0], bare))
    assert without.speed("threaded") is None
    assert measures.speed_of(without, bare).estimate == 9.9
    assert findings.speedup(without, bare) == 9.9


def test_the_slower_and_faster_limits_are_defined_once() -> None:
    """No module but ``gpubench.stats`` writes the 0.95 limit, or binds a name for either
    limit (``SLOWER``, ``FASTER``, ``CLEARLY_FASTER``) to a number of its own."""
    package = Path(__file__).resolve().parents[1] / "gpubench"
    names = {"SLOWER", "FASTER", "CLEARLY_FASTER"}
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "stats.py" and path.parent == package:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(package)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Constant) and node.value == 0.95:
                found.append(where)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and any(
                isinstance(t, ast.Name) and t.id in names for t in node.targets
            ):
                found.append(where)
    assert found == []
