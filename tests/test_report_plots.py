"""Plots are real PNGs of sane size, and missing or malformed data skips a plot, never a report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from gpubench.report import plots
from gpubench.report.plots import DPI, WIDTH_IN, write_plots
from gpubench.results import Results, read_results

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load(name: str) -> Results:
    return read_results(FIXTURES / f"{name}.json")


def open_png(path: Path) -> Image.Image:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(path)
    image.load()
    assert image.format == "PNG"
    return image


@pytest.mark.parametrize(
    ("name", "devices"), [("report_1gpu", 1), ("report_2slots", 2), ("report_4gpus", 4)]
)
def test_every_plot_is_written_and_opens(tmp_path: Path, name: str, devices: int) -> None:
    written = write_plots(load(name), tmp_path, "r", "en")
    assert [p.kind for p in written] == list(plots.PLOT_KINDS)
    for p in written:
        assert p.reason is None, p
        assert p.path == tmp_path / f"r-{p.kind}.png"
        image = open_png(p.path)
        width, height = image.size
        assert width == int(WIDTH_IN * DPI)
        assert 300 <= height <= 2000
        # not a blank canvas: more than a handful of colours
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 8
    heights = {p.kind: open_png(p.path).size[1] for p in written if p.path}
    assert heights["utilisation"] == {1: 370, 2: 540, 4: 880}[devices]
    assert not list(tmp_path.glob(".*.tmp"))


def test_no_monitoring_skips_only_the_utilisation_plot(tmp_path: Path) -> None:
    nomonitor = load("report_nomonitor")
    written = {
        p.kind: p for p in write_plots(nomonitor, tmp_path, "r", kinds=("utilisation", "gantt"))
    }
    assert written["utilisation"].path is None
    assert written["utilisation"].reason == "no monitoring data in this run"
    assert not (tmp_path / "r-utilisation.png").exists()
    for kind in ("gantt",):
        assert written[kind].path is not None and written[kind].path.exists()


@pytest.mark.parametrize(
    "monitor",
    [
        {"backend": "host"},
        {"backend": "host", "timeline": {"t": [0.0, 0.1], "util": {"cpu:0": [1.0]}}},
        {"backend": "host", "timeline": {"t": "nonsense", "util": None}},
        {"timeline": {"t": [0.0, "x"], "util": {"cpu:0": [1, 2]}}},
        ["not", "a", "dict"],
    ],
)
def test_malformed_monitor_is_skipped_with_a_reason(tmp_path: Path, monitor: object) -> None:
    results = replace(load("report_2slots"), monitor=monitor)  # type: ignore[arg-type]
    (written,) = write_plots(results, tmp_path, "r", "zh", kinds=("utilisation",))
    assert written.path is None
    assert written.reason == "监控时间线缺失或格式不对"


def test_odd_spans_and_null_samples_still_draw(tmp_path: Path) -> None:
    results = load("report_2slots")
    monitor = dict(results.monitor or {})
    monitor["spans"] = [{"mode": "serial"}, "junk", {"mode": "serial", "phase": "round",
                                                     "start_s": 0, "end_s": 1e9}]
    util = dict(monitor["timeline"]["util"])
    util["cpu:1"] = [None] * len(util["cpu:1"])
    monitor["timeline"] = {**monitor["timeline"], "util": util}
    (written,) = write_plots(
        replace(results, monitor=monitor), tmp_path, "r", kinds=["utilisation"]
    )
    assert written.path is not None
    open_png(written.path)


def test_nothing_to_draw_gives_reasons_not_errors(tmp_path: Path) -> None:
    results = load("report_failed")
    only_failed = results.with_modes(tuple(m for m in results.modes if not m.ok))
    written = {p.kind: p for p in write_plots(replace(only_failed, monitor=None), tmp_path, "r")}
    assert all(p.path is None for p in written.values())
    assert written["speedup"].reason == "no mode has a speedup vs serial"
    assert written["gantt"].reason == "no per-client timings in this run"
    assert written["memory"].reason == "no memory measurements in this run"
    assert list(tmp_path.iterdir()) == []


def test_zh_without_a_cjk_font_falls_back_to_english_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plots, "find_cjk_font", lambda: None)
    written = write_plots(load("report_1gpu"), tmp_path, "r", "zh", kinds=["speedup", "gantt"])
    drawn = [p for p in written if p.path is not None]
    assert drawn and all(p.lang == "en" for p in drawn)
    assert written[0].title == "各模式加速比"  # the page itself stays in Chinese


def test_zh_with_a_cjk_font_labels_plots_in_chinese(tmp_path: Path) -> None:
    if plots.find_cjk_font() is None:
        pytest.skip("no font with Chinese glyphs on this machine")
    written = write_plots(load("report_1gpu"), tmp_path, "r", "zh", kinds=["speedup"])
    assert all(p.lang == "zh" for p in written if p.path is not None)


def test_gantt_round_is_the_median_measured_one() -> None:
    from gpubench.report.measures import representative_round

    mode = load("report_2slots").mode("serial")
    assert mode is not None
    record = representative_round(mode)
    assert record is not None and not record.warmup
    assert record.time_s == sorted(mode.round_times_s)[1]
    # serial: one lane, clients one after another
    ends = [c.end_s for c in sorted(record.clients, key=lambda c: c.start_s)]
    starts = [c.start_s for c in sorted(record.clients, key=lambda c: c.start_s)][1:]
    assert all(s >= e for s, e in zip(starts, ends, strict=False))


def test_interleaved_rounds_are_gathered_under_their_mode(tmp_path: Path) -> None:
    results = load("report_2slots")
    blocks = plots._round_blocks(results)
    assert [m.name for m, _ in blocks] == [m.name for m in results.modes if m.ok]
    for mode, windows in blocks:
        assert {w.mode for w in windows} == {mode.name}
        assert len(windows) == len(mode.round_times_s)
    (written,) = write_plots(results, tmp_path, "r", "en", kinds=["utilisation"])
    assert written.path is not None and written.reason is None


def test_no_measured_round_in_the_spans_skips_with_a_reason(tmp_path: Path) -> None:
    results = load("report_2slots")
    monitor = dict(results.monitor or {})
    monitor["spans"] = [s for s in monitor["spans"] if s.get("phase") != "round"]
    (written,) = write_plots(replace(results, monitor=monitor), tmp_path, "r", "zh",
                             kinds=["utilisation"])
    assert written.path is None and written.reason == "监控没有记录到测量轮次"


def test_the_mplfonts_font_is_found_when_installed() -> None:
    from gpubench.report import fonts

    found = fonts.packaged_fonts()
    if not any("mplfonts" in str(f) for f in found):
        pytest.skip("mplfonts (gpubench[zh]) is not installed")
    assert fonts.find_cjk_font() is not None
