"""Each plot draws what its table says: the same speed per mode, and the same marks (failed,
other result, not reproducible, unsampled), each its own shape with its own legend entry; a mode
with no value is never the tallest shape; the axis is not stretched by one whisker; labels
never overprint; the Gantt panels share one time scale; the utilisation labels are the tables'."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from gpubench.report import measures, plots, tables
from gpubench.report.i18n import mode_label, text
from gpubench.report.plots import (
    AXIS_CAP,
    HATCH,
    NOT_REPRODUCIBLE_HATCH,
    UNSAMPLED_HATCH,
    plot_language,
    plot_rc,
    speedup_figure,
)
from gpubench.results import PHASE_ROUND, Results, read_results

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
LANGS = ["en", "zh"]


def marked_run() -> Results:
    """serial and multi-gpu ok, multiprocess failed, threaded not reproducible, and a copy of
    multi-gpu ("vectorized") that computed another result with no monitor sample in its
    rounds (streams: not applicable, in no plot)."""
    results = read_results(FIXTURES / "report_failed.json")
    modes = []
    for m in results.modes:
        if m.name == "threaded":
            m = replace(m, reproducible=False, same_result=None,
                        not_reproducible_reason="non-deterministic kernels")
        modes.append(m)
        if m.name == "multi-gpu":
            modes.append(replace(
                m, name="vectorized", same_result=False, max_abs_diff_vs_serial=0.3,
                device_stats=tuple(replace(s, util_mean_pct=None, util_p95_pct=None, busy=None,
                                           samples=0) for s in m.device_stats)))
    return results.with_modes(tuple(modes))


EXPECTED_MARKS = {
    "serial": (),
    "threaded": (measures.MARK_NOT_REPRODUCIBLE,),
    "multiprocess": (measures.MARK_FAILED,),
    "multi-gpu": (),
    "vectorized": (measures.MARK_DIFFERS, measures.MARK_UNSAMPLED),
}


def table_rows(results: Results, lang: str) -> dict[str, list[str]]:
    """Mode -> the cells of its row in the performance table (markdown)."""
    table = tables.format_performance_table(results, lang, "github")
    lines = table.splitlines()
    cpu = results.on_cpu_slots
    labels = {mode_label(m.name, lang, cpu_slots=cpu, devices=len(m.devices)): m.name
              for m in results.modes}
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[labels[cells[0]]] = cells
    return rows


def build_speedup(results: Results, lang: str) -> tuple[Figure, Any]:
    with matplotlib.rc_context(plot_rc(lang)):
        made = speedup_figure(results, plot_language(lang)[0])
        assert not isinstance(made, str)
        FigureCanvasAgg(made[0]).draw()
    return made


def tick_marks(fig: Figure, lang: str) -> list[tuple[str, ...]]:
    (ax,) = fig.axes
    return [tables.cell_marks([t.get_text()], lang) for t in ax.get_xticklabels()]


def legend_texts(fig: Figure) -> list[str]:
    found = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    found += [t.get_text() for ax in fig.axes if ax.get_legend() is not None
              for t in ax.get_legend().get_texts()]
    return found


@pytest.mark.parametrize("lang", LANGS)
def test_the_speedup_plot_draws_the_tables_speeds_and_marks(lang: str) -> None:
    results = marked_run()
    fig, bars = build_speedup(results, lang)
    rows = table_rows(results, lang)
    header = tables.format_performance_table(results, lang, "github").splitlines()[0]
    at = [c.strip() for c in header.strip().strip("|").split("|")].index(text("col.speed", lang))
    (ax,) = fig.axes
    rects = {p.get_gid(): p for p in ax.patches if isinstance(p, Rectangle) and p.get_gid()}
    shapes = {c.get_gid(): c for c in ax.collections if isinstance(c, PathCollection)}
    labels = [t.get_text() for t in ax.texts]

    # every mode that ran or failed is drawn, in the table's order, marked as the table marks it
    assert [b.mode for b in bars] == list(EXPECTED_MARKS)
    marks = dict(zip([b.mode for b in bars], tick_marks(fig, lang), strict=True))
    for mode, expected in EXPECTED_MARKS.items():
        assert marks[mode] == expected, mode
        assert tables.cell_marks(rows[mode], lang) == expected, (mode, rows[mode])
    assert tables.cell_marks(rows["streams"], lang) == ()

    # the bars' heights and labels are the table's speed cells
    for bar in bars:
        cell = rows[bar.mode][at]
        if bar.value is None:
            assert f"speedup:{bar.mode}" not in rects
            continue
        height = rects[f"speedup:{bar.mode}"].get_height()
        assert f"{height:.2f}x" == cell.split(" ")[0], (bar.mode, cell)
        assert cell.split(" ")[0] in labels

    # each mark its own shape: none of them is the other's
    assert shapes["speedup:multiprocess:failed"].get_facecolor().size == 0  # empty circle
    assert shapes["speedup:vectorized:differs"].get_hatch() == HATCH
    assert rects["speedup:threaded"].get_hatch() == NOT_REPRODUCIBLE_HATCH
    assert rects["speedup:multi-gpu"].get_hatch() is None
    assert len({HATCH, NOT_REPRODUCIBLE_HATCH, UNSAMPLED_HATCH}) == 3
    # a mode without a value sits at the baseline, under every bar's top
    tallest = max(r.get_height() for r in rects.values())
    for gid in ("speedup:multiprocess:failed", "speedup:vectorized:differs"):
        ((_, y),) = shapes[gid].get_offsets()
        assert y == 0 < tallest
    assert text("mark.failed", lang) in labels and text("mark.differs", lang) in labels
    # the legend explains every mark once, and each verdict colour shown
    legend = legend_texts(fig)
    for mark in measures.MARKS:
        assert legend.count(text(f"mark.{mark}.legend", lang)) == 1, mark
    assert text("verdict.speed.faster", lang) in legend
    assert text("verdict.speed.slower", lang) in legend


@pytest.mark.parametrize("lang", LANGS)
def test_the_tables_legend_explains_the_marks_it_shows(lang: str) -> None:
    results = marked_run()
    legend = tables.marks_legend([results], lang)
    assert legend is not None
    for mark in measures.MARKS:
        assert text(f"mark.{mark}.legend", lang) in legend
    plain = read_results(FIXTURES / "report_2slots.json")
    assert tables.marks_legend([plain], lang) is None


OWN4 = ROOT / "reports/cpu-own-client/idealised-cpu1.json"


@pytest.mark.parametrize("lang", LANGS)
def test_one_wide_whisker_does_not_stretch_the_axis(lang: str) -> None:
    results = read_results(OWN4)
    fig, bars = build_speedup(results, lang)
    (ax,) = fig.axes
    drawn = [b for b in bars if b.value is not None]
    wide = [b for b in drawn if b.mode == "multiprocess"]
    # the committed file's: a whisker many times the tallest bar
    assert wide and wide[0].high is not None
    assert wide[0].high > 5 * max(b.value or 0 for b in drawn)
    top = ax.get_ylim()[1]
    assert top <= AXIS_CAP * max(max(b.value or 0 for b in drawn), max(b.ideal for b in bars))
    clipped = {line.get_gid() for line in ax.get_lines() if line.get_gid()}
    # every whisker ends inside the axis
    for whisker in ax.collections:
        for segment in getattr(whisker, "get_segments", list)():
            assert max(y for _, y in segment) <= top
    for bar in drawn:
        assert bar.high is not None
        cut = bar.high > top / plots.LABEL_ROOM
        assert (f"speedup:{bar.mode}:clipped" in clipped) == cut, bar.mode
        if cut:
            assert f"↑ {bar.high:.2f}" in [t.get_text() for t in ax.texts]


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("path", [OWN4, FIXTURES / "report_failed.json"])
def test_mode_names_under_the_bars_never_overprint(lang: str, path: Path) -> None:
    fig, _ = build_speedup(read_results(path), lang)
    (ax,) = fig.axes
    boxes = sorted((t.get_window_extent() for t in ax.get_xticklabels()), key=lambda b: b.x0)
    assert len(boxes) >= 4
    for left, right in zip(boxes, boxes[1:], strict=False):
        assert left.x1 <= right.x0, (left, right)


def capture(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures a drawer of gpubench.report.plots builds, instead of their files."""
    figures: list[Figure] = []

    def keep(fig: Figure, path: Path) -> Path:
        figures.append(fig)
        return path

    monkeypatch.setattr(plots, "write_figure", keep)
    return figures


@pytest.mark.parametrize("lang", LANGS)
def test_the_gantt_panels_share_one_time_scale(monkeypatch: pytest.MonkeyPatch,
                                               lang: str) -> None:
    figures = capture(monkeypatch)
    results = read_results(OWN4)
    with matplotlib.rc_context(plot_rc(lang)):
        assert plots.draw_gantt(results, Path("g.png"), plot_language(lang)[0]) == Path("g.png")
    (fig,) = figures
    limits = {ax.get_xlim() for ax in fig.axes}
    assert len(fig.axes) >= 4 and len(limits) == 1
    slowest = max(measures.representative_round(m).time_s  # type: ignore[union-attr]
                  for m in results.modes if m.ok)
    assert limits.pop()[1] >= slowest


def _without_samples(results: Results, mode: str, device: str) -> Results:
    """``results`` with no utilisation sample of ``device`` in ``mode``'s measured rounds."""
    monitor = copy.deepcopy(results.monitor)
    assert isinstance(monitor, dict)
    for i in results.monitor_record.sample_indices(mode, PHASE_ROUND,
                                                            column="util"):
        monitor["timeline"]["util"][device][i] = None
    return replace(results, monitor=monitor)


@pytest.mark.parametrize("lang", LANGS)
def test_utilisation_labels_are_the_tables_and_unsampled_rounds_have_their_own_mark(
    monkeypatch: pytest.MonkeyPatch, lang: str
) -> None:
    figures = capture(monkeypatch)
    results = _without_samples(read_results(FIXTURES / "report_2slots.json"), "threaded",
                               "cpu:0")
    plot_lang = plot_language(lang)[0]
    with matplotlib.rc_context(plot_rc(lang)):
        assert plots.draw_utilisation(results, Path("u.png"), plot_lang) == Path("u.png")
    (fig,) = figures
    rows = table_rows(results, plot_lang)
    devices = measures.device_ids(results)
    labelled = 0
    for ax in fig.axes:
        for t in ax.texts:
            gid = t.get_gid() or ""
            if not gid.endswith(":mean"):
                continue
            # util:<mode>:<device>:mean, the device itself "cpu:0"
            parts = gid.split(":")
            mode_name, device = parts[1], ":".join(parts[2:-1])
            mode = results.mode(mode_name)
            assert mode is not None
            pct = measures.util_pct(mode, device)
            assert pct is not None and t.get_text() == f"{pct:.0f}%"
            # the table's device cell shows the same figure
            cell = rows[mode_name][1 + devices.index(device)]
            assert f"{pct:.0f}%" in cell, (cell, t.get_text())
            labelled += 1
    assert labelled >= 4
    hatches = [p for ax in fig.axes for p in ax.patches
               if (p.get_gid() or "").startswith("util:threaded:cpu:0:")]
    assert hatches and all(p.get_hatch() == UNSAMPLED_HATCH != HATCH for p in hatches)
    assert text("mark.unsampled.legend", plot_lang) in legend_texts(fig)


@pytest.mark.parametrize("lang", LANGS)
def test_the_verdict_plot_explains_its_colours_and_labels(
    monkeypatch: pytest.MonkeyPatch, lang: str
) -> None:
    from gpubench.report import faq_plots
    from gpubench.report.faq_page import answer_beliefs
    from gpubench.report.faq_text import faq_text
    from tests.test_faq import cpu_slot_inputs

    figures = capture(monkeypatch)
    answers = answer_beliefs(cpu_slot_inputs())
    plot_lang = plot_language(lang)[0]
    with matplotlib.rc_context(plot_rc(lang)):
        assert faq_plots.draw_verdicts(answers, Path("v.png"), plot_lang) == Path("v.png")
    (fig,) = figures
    (ax,) = fig.axes
    shown = [p for a in answers for p in a.parts if p.interval is not None]
    legend = legend_texts(fig)
    # one entry per colour, naming every verdict drawn in it
    colours = {faq_plots._VERDICT_COLOUR.get(p.verdict, "tab:gray") for p in shown}
    verdict_entries = [e for e in legend if any(
        faq_text(f"verdict.{p.verdict}", plot_lang) in e for p in shown)]
    assert len(verdict_entries) == len(colours)
    for p in shown:
        assert any(faq_text(f"verdict.{p.verdict}", plot_lang) in e for e in verdict_entries)
    # every row's name stands for itself: no bare symbol such as "P"
    for label in ax.get_yticklabels():
        assert not label.get_text().startswith("P "), label.get_text()
    assert faq_text("plot.verdicts.notes", plot_lang) in legend
