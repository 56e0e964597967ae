"""The monitor's section typed (gpubench.monitor_record): the parser, the one rule for which
samples belong to which span, and every reader answering by that rule."""

from __future__ import annotations

import importlib.util
import re
import statistics
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gpubench.monitor_record import PHASE_ROUND, Monitor
from gpubench.report import plots
from gpubench.report.tables import format_summary_table
from gpubench.results import ModeResult, Results, read_results, write_results

ROOT = Path(__file__).resolve().parents[1]


def _span(mode: str | None, phase: str, index: int | None, start: float, end: float
          ) -> dict[str, Any]:
    return {"mode": mode, "phase": phase, "round": index, "start_s": start, "end_s": end}


def test_an_old_or_partial_section_parses_to_empty_parts_not_errors() -> None:
    raw = {
        "backend": "host",
        "spans": [
            {"mode": "serial", "phase": "round", "round": 0, "start_s": 0.0},  # no end: out
            _span("serial", "round", 1, 0.0, 2.0),
            "not a span",
            _span("serial", "round", 2, 2.0, 4.0),
        ],
        # no "span" tags, no own_util; a mem series of the wrong length
        "timeline": {"t": [1.0, 3.0], "util": {"cpu:0": [50, None]}, "mem": {"cpu:0": [7]}},
    }
    monitor = Monitor.of(raw)
    assert (monitor.backend, monitor.interval_s, monitor.note, monitor.devices) == (
        "host", None, None, ())
    assert [s.index for s in monitor.spans] == [1, 3]  # the file's indices, kept
    assert monitor.timeline.series("mem", "cpu:0") == ()
    assert monitor.samples("own_util", "cpu:0", "serial") == []
    assert monitor.timeline.series("util", "cpu:0") == (50, None)
    assert monitor.timeline.span == (1, 3)  # the span open at each sample's time
    assert monitor.samples("util", "cpu:0", "serial", PHASE_ROUND, 1) == [50]
    assert monitor.samples("util", "cpu:0", "serial", PHASE_ROUND, 2) == []  # null left out
    for broken in (None, [], {}, {"spans": "x", "timeline": {"t": [1.0, "x"]}}):
        empty = Monitor.of(broken)
        assert empty.spans == () and empty.timeline.t == () and empty.outside_rounds_s() is None


def test_results_keep_the_raw_section_and_parse_it_once(tmp_path: Path) -> None:
    raw = {"backend": "host", "interval_s": 0.1, "devices": ["cpu:0"],
           "spans": [_span("serial", "round", 0, 0.0, 1.0)],
           "timeline": {"t": [0.5], "span": [0], "util": {"cpu:0": [75.0]}}}
    path = write_results(Results({}, {}, (), monitor=raw), tmp_path / "r.json")
    loaded = read_results(path)
    assert loaded.monitor == raw  # the file format is the sampler's object, unchanged
    assert loaded.monitor_record is loaded.monitor_record
    assert loaded.monitor_record.samples("util", "cpu:0", "serial") == [75.0]


@pytest.mark.parametrize("tagged", [True, False])
def test_a_sample_at_a_round_boundary_belongs_to_exactly_one_round(tagged: bool) -> None:
    spans = [_span("a", "round", 0, 0.0, 1.0), _span("a", "round", 1, 1.0, 2.0),
             _span("b", "round", 0, 2.0, 3.0)]
    t = [0.5, 1.0, 1.5, 2.0, 2.5]
    # As the sampler tags them: a sample read at the instant a round is marked is in it.
    timeline: dict[str, Any] = {"t": t, "mem": {"cpu:0": [10.0, 20.0, 30.0, 40.0, 50.0]},
                                "util": {"cpu:0": [10.0, 20.0, 30.0, 40.0, 50.0]}}
    if tagged:
        timeline["span"] = [0, 1, 1, 2, 2]
    monitor = Monitor.of({"spans": spans, "timeline": timeline})
    per_round = [monitor.samples("mem", "cpu:0", span=s.index) for s in monitor.rounds()]
    assert per_round == [[10.0], [20.0, 30.0], [40.0, 50.0]]
    # utilisation covers the window since the previous sample: the span at its middle
    windowed = [monitor.samples("util", "cpu:0", span=s.index) for s in monitor.rounds()]
    assert windowed == [[10.0, 20.0], [30.0, 40.0], [50.0]]
    assert sum(len(v) for v in per_round) == len(t)  # no sample counted twice, none lost
    assert monitor.samples("mem", "cpu:0", "a") == [10.0, 20.0, 30.0]
    assert monitor.samples("mem", "cpu:0", "b", PHASE_ROUND, 0) == [40.0, 50.0]
    assert monitor.samples("util", "cpu:0", "b", PHASE_ROUND, 0) == [50.0]


def test_the_recorded_span_wins_over_the_sample_time() -> None:
    # The sampler read the last sample of round 0 before the next mark; the times are
    # rounded to the millisecond, so it shows the next round's start time.
    monitor = Monitor.of({
        "spans": [_span("a", "round", 0, 0.0, 1.0), _span("a", "round", 1, 1.0, 2.0)],
        "timeline": {"t": [0.5, 1.0, 1.5], "span": [0, 0, 1],
                     "mem": {"cpu:0": [1.0, 2.0, 3.0]}},
    })
    assert monitor.samples("mem", "cpu:0", round_index=0) == [1.0, 2.0]
    assert monitor.samples("mem", "cpu:0", round_index=1) == [3.0]


# --- every reader by the one rule ---------------------------------------------------------

# (time, recorded span, util, other programs' util, memory) on cpu:0. The sample at 12.0 was
# taken in serial's last round although its time is multiprocess's first round's start: a
# reader that attributes by time (or by a window that includes both ends) answers otherwise.
SAMPLES = [
    (5.0, 1, 5.0, 50.0, 100),  # start-up: in no round
    (10.5, 2, 80.0, 2.0, 1000),
    (11.5, 3, 100.0, 6.0, 1200),
    (12.0, 3, 60.0, 31.0, 2000),
    (12.5, 4, 20.0, 0.0, 3000),
    (13.5, 5, 40.0, 4.0, 5000),
]


def _crafted_run() -> Results:
    spans = [
        _span(None, "between", None, 0.0, 0.0),
        _span("serial", "cold_start", None, 0.0, 10.0),
        _span("serial", "round", 0, 10.0, 11.0),
        _span("serial", "round", 1, 11.0, 12.0),
        _span("multiprocess", "round", 0, 12.0, 13.0),
        _span("multiprocess", "round", 1, 13.0, 14.0),
    ]
    column = list(zip(*SAMPLES, strict=True))
    monitor = {
        "backend": "host", "interval_s": 0.5, "devices": ["cpu:0"], "spans": spans,
        "timeline": {"t": list(column[0]), "span": list(column[1]),
                     "util": {"cpu:0": list(column[2])}, "other_util": {"cpu:0": list(column[3])},
                     "mem": {"cpu:0": list(column[4])}},
    }
    modes = tuple(
        ModeResult(name, "ok", devices=("cpu:0",), workers=workers, round_times_s=(1.0, 1.0),
                   same_result=True)
        for name, workers in (("serial", 1), ("multiprocess", 2))
    )
    config = {"device_ids": ["cpu:0"], "interleave": False}
    return Results({}, config, modes, monitor=monitor)


def _with_sampler_stats(run: Results) -> Results:
    """``run`` with each mode's device statistics as the sampler computes them from the same
    samples (``gpubench.monitor.timeline``, the measuring side)."""
    from gpubench.monitor.timeline import Snapshot, mode_device_stats

    raw = run.monitor or {}
    timeline = raw["timeline"]
    n = len(timeline["t"])
    cols = {c: {"cpu:0": [None] * n} for c in ("power_w", "energy_j", "sm_active", "sm_occupancy")}
    cols.update({c: timeline[c] for c in ("util", "other_util", "mem")})
    snap = Snapshot(spans=raw["spans"], t=timeline["t"], span=timeline["span"], cols=cols,
                    procs=[{} for _ in range(n)])
    return run.with_modes(tuple(
        replace(m, device_stats=mode_device_stats(snap, m.name, ["cpu:0"], {},
                                                  busy_threshold_pct=50.0, min_samples=1))
        for m in run.modes))


def _quiet_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quiet_check", ROOT / "scripts" / "quiet_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sampler_table_plot_and_evidence_check_read_the_same_samples_of_a_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _with_sampler_stats(_crafted_run())
    monitor = run.monitor_record
    util = {m: monitor.samples("util", "cpu:0", m, PHASE_ROUND) for m in ("serial", "multiprocess")}
    # utilisation covers the window since the previous sample: the sample at 10.5 s is mostly
    # serial's start-up (window middle 7.75 s), the one at 12.0 s serial's last round
    assert util == {"serial": [100.0, 60.0], "multiprocess": [20.0, 40.0]}
    # the sampler's own statistic (the measuring side) by the same rule
    for m in run.modes:
        assert m.device_stats[0].util_mean_pct == pytest.approx(statistics.mean(util[m.name]))

    # The utilisation plot: each mode's mean over its rounds, as annotated on the figure; the
    # table's cell shows the same figure.
    figures: list[Any] = []
    monkeypatch.setattr(plots, "write_figure", lambda fig, path: figures.append(fig) or path)
    assert plots.draw_utilisation(run, tmp_path / "u.png", "en") == tmp_path / "u.png"
    (axes,) = figures[0].axes
    drawn = [t.get_text() for t in axes.texts if re.fullmatch(r"\d+%", t.get_text())]
    assert drawn == [f"{statistics.mean(util[m]):.0f}%" for m in ("serial", "multiprocess")]
    table = format_summary_table(run)
    assert all(f"{statistics.mean(util[m]):.0f}% of the slot" in table for m in util)

    # A memory column is an instant value: the samples read in the mode's rounds.
    assert monitor.samples("mem", "cpu:0", "serial", PHASE_ROUND) == [1000, 1200, 2000]
    assert monitor.samples("mem", "cpu:0", "multiprocess", PHASE_ROUND) == [3000, 5000]

    # The evidence check's estimate of other programs' load.
    check = _quiet_check()
    assert check.timeline_estimate(run, "serial", "cpu:0") == pytest.approx((6 + 31) / 2)
    assert check.timeline_estimate(run, "multiprocess", "cpu:0") == pytest.approx(2.0)

    # The time left out of the plot: everything but the four rounds.
    assert monitor.outside_rounds_s() == pytest.approx(10.0)
