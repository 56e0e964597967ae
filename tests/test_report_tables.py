"""Behaviour of the report tables and the numbers behind them (goldens are elsewhere)."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
import tabulate
from hypothesis import given, settings
from hypothesis import strategies as st

from gpubench import stats
from gpubench.gate import INCONCLUSIVE, PASS, evaluate_gate
from gpubench.report import measures
from gpubench.report.i18n import device_label, mode_label, text
from gpubench.report.tables import (
    display_width,
    format_combined_table,
    format_performance_table,
    format_summary_table,
    render,
    speed_cell,
    verdict_cell,
)
from gpubench.results import DeviceStats, ModeResult, Results, read_results

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load(name: str) -> Results:
    return read_results(FIXTURES / f"{name}.json")


def ok_mode(
    name: str, times: tuple[float, ...], devices: tuple[str, ...] = ("cpu:0",)
) -> ModeResult:
    return ModeResult(name=name, status="ok", devices=devices, round_times_s=times)


def row_of(table: str, first_cell: str) -> str:
    rows = [line for line in table.splitlines() if line.strip("| ").startswith(first_cell)]
    assert rows, f"no row {first_cell!r} in\n{table}"
    return rows[0]


def test_speed_marks_follow_the_measured_speedup() -> None:
    serial = ok_mode("serial", (1.0, 1.02, 0.98))
    results = Results(
        environment={},
        config={},
        modes=(
            serial,
            ok_mode("threaded", (2.4, 2.5, 2.45)),
            ok_mode("multiprocess", (0.99, 1.0, 1.01)),
            ok_mode("multi-gpu", (0.52, 0.51, 0.53), ("cpu:0", "cpu:1")),
        ),
    )
    cells = {m.name: speed_cell(results, m) for m in results.modes}
    verdicts = {m.name: verdict_cell(results, m, "en") for m in results.modes}
    assert cells["serial"] == "1.00x" and verdicts["serial"] == "baseline"
    assert cells["threaded"].startswith("0.41x [") and verdicts["threaded"] == "slower"
    # ~1x within the noise is not a gain
    assert cells["multiprocess"].startswith("1.00x [")
    assert verdicts["multiprocess"] == "no clear difference"
    assert cells["multi-gpu"].startswith("1.92x [") and verdicts["multi-gpu"] == "faster"
    # the bracket is the interval stats gives, the one the findings and the gate read
    interval = measures.speed_of(results, results.modes[3]).interval
    assert interval is not None
    assert cells["multi-gpu"] == f"1.92x [{interval.low:.2f}, {interval.high:.2f}]"


def test_wide_spread_keeps_a_modest_gain_unmarked() -> None:
    results = Results(
        environment={},
        config={},
        modes=(ok_mode("serial", (1.0, 1.0, 1.0, 1.0)), ok_mode("threaded", (0.7, 0.9, 1.0, 1.3))),
    )
    cell = verdict_cell(results, results.modes[1], "en")
    assert cell == "no clear difference", cell  # 1.05x with a wide interval: not faster


def test_the_speedup_comes_from_the_round_times() -> None:
    results = Results(
        environment={},
        config={},
        modes=(ok_mode("serial", (2.0, 2.0)), ok_mode("multi-gpu", (1.0, 1.0))),
    )
    assert measures.speedup(results, results.modes[1]) == pytest.approx(2.0)
    # a recorded figure that disagrees with the rounds loses: one speedup, from stats
    recorded = replace(results.modes[1], speedup_vs_serial=1.5)
    run = results.with_modes((results.modes[0], recorded))
    assert measures.speedup(run, recorded) == pytest.approx(2.0)
    # a file without round times keeps its recorded figure
    bare = replace(recorded, round_times_s=())
    assert measures.speedup(results.with_modes((results.modes[0], bare)), bare) == 1.5


def test_an_interleaved_run_shows_the_paired_speedup() -> None:
    serial = (1.0, 1.1, 3.0) * 2
    mode = (0.5, 2.0, 1.0) * 2  # per-round ratios 2, 0.55, 3: median 2; medians 1.1 / 1.0
    modes = (ok_mode("serial", serial), ok_mode("multi-gpu", mode, ("cpu:0", "cpu:1")))
    interleaved = Results(environment={}, config={"interleave": True}, modes=modes)
    sequential = Results(environment={}, config={}, modes=modes)
    assert speed_cell(interleaved, modes[1]).startswith("2.00x")
    assert speed_cell(sequential, modes[1]).startswith("1.10x")


# --- the ✅ is the gate's verdict on the same question ----------------------------------------


def _gate_on_faster(results: Results, tmp: Path) -> dict[str, str]:
    """The gate's verdicts on the report's question: speedup >= stats.FASTER."""
    toml = tmp / "faster.toml"
    toml.write_text(
        f"[[expect]]\nmode = ['threaded', 'multi-gpu']\nmin_speedup = {stats.FASTER}\n"
    )
    report = evaluate_gate(results, toml)
    return {v.mode: v.verdict for v in report.verdicts}


def _mark(results: Results, name: str) -> str:
    """The speed verdict column, as the page shows it."""
    mode = results.mode(name)
    assert mode is not None
    return "✅" if verdict_cell(results, mode, "en") == "faster" else "❌"


def _two_modes(serial: list[float], threaded: list[float], multi: list[float],
               interleave: bool = False) -> Results:  # fmt: skip
    return Results(
        environment={},
        config={"case": "cnn", "clients": 4, "device_ids": ["cpu:0", "cpu:1"],
                "interleave": interleave},
        modes=(
            ok_mode("serial", tuple(serial)),
            ok_mode("threaded", tuple(threaded)),
            ok_mode("multi-gpu", tuple(multi), ("cpu:0", "cpu:1")),
        ),
    )  # fmt: skip


def test_a_mode_the_gate_calls_inconclusive_gets_no_tick(tmp_path: Path) -> None:
    # 1.25x with an IQR of 12%: the old spread rule ticked it; its 99% interval [1.00, 1.25]
    # straddles 1.05
    results = _two_modes([1.0] * 5, [0.8, 0.8, 0.8, 1.0, 1.0], [0.5, 0.51, 0.5, 0.52, 0.5])
    assert _gate_on_faster(results, tmp_path) == {"threaded": INCONCLUSIVE, "multi-gpu": PASS}
    assert _mark(results, "threaded") == "❌" and _mark(results, "multi-gpu") == "✅"


round_times = st.lists(st.floats(0.2, 5.0), min_size=6, max_size=10)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(
    serial=round_times,
    threaded=round_times,
    scale=st.floats(0.3, 1.2),
    interleave=st.booleans(),
)
def test_the_tick_and_the_gate_never_disagree(
    serial: list[float], threaded: list[float], scale: float, interleave: bool
) -> None:
    n = min(len(serial), len(threaded))
    multi = [t * scale for t in serial[:n]]  # near the limit often: the hard cases
    results = _two_modes(serial[:n], threaded[:n], multi, interleave)
    with tempfile.TemporaryDirectory() as tmp:
        gate = _gate_on_faster(results, Path(tmp))
    for name, verdict in gate.items():
        mark = _mark(results, name)
        assert (mark == "✅") == (verdict == PASS), (name, verdict, mark)


def test_relative_spread_is_iqr_over_median() -> None:
    assert measures.relative_spread([1.0, 2.0, 3.0, 4.0]) == pytest.approx((3.25 - 1.75) / 2.5)
    assert measures.relative_spread([1.0]) is None
    assert measures.relative_spread([0.0, 0.0]) is None


def test_cpu_slots_are_never_called_gpus() -> None:
    results = load("report_2slots")
    for lang in ("en", "zh"):
        perf = format_performance_table(results, lang, "github")
        summary = format_summary_table(results, lang=lang)
        assert "GPU" not in perf and "GPU" not in summary
        assert device_label("cpu:1", lang) in perf
    assert device_label("cuda:1", "zh") == "GPU 1"
    assert device_label("cpu:0", "en") == "CPU slot 0"
    assert device_label("cpu:0", "zh") == "CPU 槽 0"


def test_performance_table_layout_matches_the_faq() -> None:
    table = format_performance_table(load("report_1gpu"), "zh", "github")
    header = table.splitlines()[0]
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells == ["配置", "GPU 0", "速度", "速度结论", "结果校验", "显存（每个GPU）"]
    assert row_of(table, "串行").count("工作") == 1
    assert "1.00x" in row_of(table, "串行")
    threaded = [c.strip() for c in row_of(table, "多线程").strip(" |").split("|")]
    assert threaded[3] != "更快" and threaded[4] == "✓"


def test_busy_and_idle_come_from_device_stats() -> None:
    table = format_performance_table(load("report_2slots"), "en", "github")
    serial = [c.strip() for c in row_of(table, "serial").strip("|").split("|")]
    multi = [c.strip() for c in row_of(table, "multi-gpu").strip("|").split("|")]
    assert serial[1].startswith("busy ") and serial[2].startswith("idle ")
    assert multi[1].startswith("busy ") and multi[2].startswith("busy ")
    assert "%" in serial[1]


def test_summary_has_device_columns_only_with_monitoring() -> None:
    with_monitor = format_summary_table(load("report_2slots")).splitlines()[0]
    without = format_summary_table(load("report_nomonitor")).splitlines()[0]
    assert "CPU slot 1" in with_monitor and "CPU slot 1 peak mem" in with_monitor
    assert "CPU slot" not in without
    perf = format_performance_table(load("report_nomonitor"), "en", "github")
    assert "busy" not in perf and "idle" not in perf
    assert row_of(perf, "multi-gpu").count("used") == 2


def test_failed_and_not_applicable_modes_show_status_and_reason() -> None:
    results = load("report_failed")
    perf = format_performance_table(results, "en", "github")
    assert "failed: worker 1 on cpu:0 died" in row_of(perf, "multiprocess")
    assert "not applicable: CUDA streams need a GPU" in row_of(perf, "streams")
    summary = format_summary_table(results)
    line = row_of(summary, "multiprocess")
    assert "failed" in line and "…" in line  # the reason is cut to one short line
    assert "last output" not in summary


def test_same_result_marks_a_differing_mode() -> None:
    results = load("report_2slots")
    bad = replace(results.modes[1], same_result=False, max_abs_diff_vs_serial=0.0123)
    table = format_summary_table(results.with_modes((results.modes[0], bad)))
    assert "✗ 1.2e-02" in table
    no_serial = results.with_modes(results.modes[1:])
    assert "baseline" not in format_summary_table(no_serial)


def test_future_modes_have_names() -> None:
    assert mode_label("vectorized", "zh") == "向量化（vmap）"
    assert mode_label("streams", "zh") == "多流（单设备）"
    assert mode_label("flower", "zh") == "Flower 模拟"
    assert mode_label("ray", "zh") == "Ray"
    assert mode_label("multi-gpu", "zh", cpu_slots=True) == "多 CPU 槽（每设备一个进程）"
    assert mode_label("some-new-mode", "zh") == "some-new-mode"
    table = format_performance_table(load("report_4gpus"), "zh", "github")
    assert "向量化（vmap）" in table and "Flower 模拟" in table


def test_wide_characters_keep_columns_aligned() -> None:
    assert display_width("配置") == 4
    assert display_width("✅") == 2
    assert display_width("1.00x ✓") == 7
    table = format_performance_table(load("report_failed"), "zh", "github")
    widths = {display_width(line) for line in table.splitlines()}
    assert len(widths) == 1, widths


def test_render_leaves_tabulate_as_it_was() -> None:
    before = (getattr(tabulate, "wcwidth", None), tabulate.WIDE_CHARS_MODE)
    render([["配置"]], ["h"], "simple")
    assert (getattr(tabulate, "wcwidth", None), tabulate.WIDE_CHARS_MODE) == before
    with pytest.raises(ValueError, match="tablefmt"):
        render([["x"]], ["h"], "latex")


def test_combined_table_has_every_runs_devices() -> None:
    table = format_combined_table(
        [("a", load("report_2slots")), ("b", load("report_4gpus"))], "en", "github"
    )
    header = table.splitlines()[0]
    assert "GPU 3" in header and "CPU slot 1" in header
    line = row_of(table, "a")
    assert line.count("—") >= 4  # run a has no GPUs


def test_device_columns_include_idle_devices() -> None:
    results = load("report_4gpus")
    assert measures.device_ids(results) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    serial = results.mode("serial")
    assert serial is not None
    assert measures.device_stat(serial, "cuda:3") == DeviceStats(
        device="cuda:3",
        busy=False,
        util_mean_pct=serial.device_stats[3].util_mean_pct,
        util_p95_pct=6.0,
        mem_peak_bytes=0,
        samples=40,
    )
    assert text("idle", "zh") in format_performance_table(results, "zh")


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="language"):
        format_performance_table(load("report_1gpu"), "fr")


def test_multi_gpu_on_one_device_is_not_called_parallel():
    from gpubench.report.i18n import mode_label

    assert mode_label("multi-gpu", "zh", devices=2) == "多 GPU（每设备一个进程）"
    assert mode_label("multi-gpu", "zh", devices=1) == "多 GPU（每设备一个进程，仅 1 个设备）"
    assert mode_label("multi-gpu", "zh", devices=1, cpu_slots=True) == "多 CPU 槽（每设备一个进程，仅 1 个设备）"
    assert mode_label("multi-gpu", "en", devices=1) == "multi-gpu (1 device)"
    assert mode_label("serial", "en", devices=1) == "serial"
