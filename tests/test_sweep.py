"""``gpubench sweep``: one results file per point, a summary, a plot; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpubench.cli import main
from gpubench.config import RunConfig, TrainConfig
from gpubench.report.sweep_page import write_sweep_plot
from gpubench.results import ModeResult, Results, read_results
from gpubench.run.sweep import (
    point_filename,
    run_sweep,
    summarize,
    write_summary,
)
from gpubench.sweep_summary import SWEEP_SUMMARY_VERSION, load_sweep_summary
from tests.conftest import cli_in_process

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--case", "mlp", "--clients", "2", "--samples-per-client", "64", "--rounds", "1",
        "--warmup", "0", "--modes", "serial", "--sample-interval", "0", "--quiet"]


def test_sweep_writes_one_file_per_point_and_a_summary(tmp_path, capsys):
    out = tmp_path / "sweep"
    loud = [a for a in TINY if a != "--quiet"]
    code = main(["sweep", *loud, "--batch-size", "16,64", "--out-dir", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "batch_size-16.json", "batch_size-64.json", "summary.json", "summary.png"]
    for value in (16, 64):
        results = read_results(out / f"batch_size-{value}.json")
        assert results.config["batch_size"] == value
        assert results.mode("serial") is not None and results.mode("serial").ok
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameter"] == "batch_size" and summary["values"] == [16, 64]
    assert [p["file"] for p in summary["points"]] == ["batch_size-16.json", "batch_size-64.json"]
    effect = summary["serial_effect"]
    assert effect["from"] == 16 and effect["to"] == 64 and effect["per_sample_speedup"] > 0
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr()
    assert "serial, --batch-size 16 -> 64:" in printed.out and "per sample" in printed.out
    # one progress display over the whole sweep: the second point ends it at 100%
    done = [line for line in printed.err.splitlines() if ": done in " in line]
    assert [line.split(": done")[0] for line in done] == [
        "gpubench: batch_size=16 serial", "gpubench: batch_size=64 serial"]
    assert " | 50% | " in done[0] and " | 100% | " in done[1] and "\r" not in printed.err


@pytest.mark.parametrize("args, words", [
    (["--batch-size", "32,64", "--clients", "2,4"], "only one parameter"),
    (["--batch-size", ","], "no value"),
    (["--batch-size", "32,,64"], "empty value"),
    (["--batch-size", "32,32"], "twice"),
    (["--batch-size", "32,x"], "not a list of numbers"),
    (["--clients", "4"], "give one parameter a comma-separated list"),
    (["--batch-size", "0,32"], "--batch-size must be >= 1"),
    (["--workers-per-device", "0,2"], "--workers-per-device must be >= 1"),
])
def test_bad_sweep_input_is_one_line_and_exit_2(args, words, tmp_path):
    proc = cli_in_process("sweep", *args, "--out-dir", str(tmp_path / "out"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("gpubench sweep")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _fake_results(batch: int, serial_s: float, threaded_s: float, util: float | None) -> Results:
    from gpubench.results import DeviceStats

    stats = () if util is None else (DeviceStats("cuda:0", True, util, 100.0, None),
                                     DeviceStats("cuda:1", False, 1.0, 5.0, None))
    return Results(
        environment={},
        config={"batch_size": batch, "samples": [512, 512], "local_epochs": 1},
        modes=(
            ModeResult("serial", "ok", devices=("cuda:0",), round_times_s=(serial_s,),
                       speedup_vs_serial=1.0, device_stats=stats),
            ModeResult("threaded", "ok", devices=("cuda:0",), round_times_s=(threaded_s,),
                       speedup_vs_serial=serial_s / threaded_s),
            ModeResult("multiprocess", "failed", error="boom"),
        ),
    )


def test_summary_from_fake_runs(tmp_path):
    table = {32: (3.0, 6.0, 35.0), 64: (1.8, 4.0, 60.0), 128: (1.2, 3.0, 88.0)}
    calls = []

    def fake_compare(config, **kwargs):
        calls.append((config.train.batch_size, kwargs["command"]))
        return _fake_results(config.train.batch_size, *table[config.train.batch_size])

    points = [(b, RunConfig(train=TrainConfig(batch_size=b))) for b in (128, 32, 64)]
    sweep = run_sweep("batch_size", points, tmp_path, compare_fn=fake_compare, command="c")
    assert [c[0] for c in calls] == [128, 32, 64]
    summary = summarize(sweep)
    rows = {p.value: {m.name: m for m in p.modes} for p in summary.points}
    assert rows[32]["serial"].util_mean_pct == 35.0  # the idle cuda:1 is not averaged in
    assert rows[32]["threaded"].util_mean_pct is None
    assert rows[32]["serial"].per_sample_us == pytest.approx(3.0 / 1024 * 1e6)
    assert rows[64]["multiprocess"].round_s is None
    effect = summary.serial_effect  # smallest and largest value, whatever the order given
    assert effect is not None and (effect.from_value, effect.to_value) == (32, 128)
    assert effect.round_speedup == pytest.approx(2.5)
    assert effect.per_sample_speedup == pytest.approx(2.5)
    written = json.loads(write_summary(summary, tmp_path).read_text())
    assert written["values"] == [128, 32, 64] and written["serial_effect"]["from"] == 32
    assert written["schema_version"] == SWEEP_SUMMARY_VERSION  # its own, not the results'
    assert load_sweep_summary(written) == summary
    assert write_sweep_plot(summary, tmp_path / "p.png").stat().st_size > 1000


def test_interrupted_point_stops_the_sweep(tmp_path):
    def fake_compare(config, **kwargs):
        r = _fake_results(config.train.batch_size, 1.0, 2.0, None)
        return Results(r.environment, r.config, r.modes, interrupted=True)

    points = [(b, RunConfig(train=TrainConfig(batch_size=b))) for b in (32, 64)]
    sweep = run_sweep("batch_size", points, tmp_path, compare_fn=fake_compare)
    assert len(sweep.points) == 1 and sweep.interrupted
    assert summarize(sweep).serial_effect is None


def test_point_filenames_are_safe():
    assert point_filename("batch_size", 32) == "batch_size-32.json"
    assert point_filename("samples_per_client", "64..512") == "samples_per_client-64..512.json"
    assert point_filename("case", "pkg/mod.py:Net") == "case-pkg_mod.py_Net.json"


def test_a_refused_point_is_listed_and_the_others_run(tmp_path):
    from gpubench.report.sweep_page import format_sweep_table
    from gpubench.run.sweep import Refusal

    calls = []

    def fake_compare(config, **kwargs):
        calls.append(config.train.batch_size)
        return _fake_results(config.train.batch_size, 1.0, 2.0, None)

    points = [(b, RunConfig(train=TrainConfig(batch_size=b))) for b in (32, 64, 128)]
    prepared = [None, Refusal("the run needs about 40 GiB of host memory"), None]
    sweep = run_sweep("batch_size", points, tmp_path, compare_fn=fake_compare, prepared=prepared)
    assert calls == [32, 128]
    summary = summarize(sweep)
    assert summary.refused == {"64": "the run needs about 40 GiB of host memory"}
    assert summary.values == (32, 64, 128) and summary.per_device is None
    assert "per_device" not in summary.to_dict()
    assert ("--batch-size 64: refused before it started: the run needs about 40 GiB"
            in format_sweep_table(summary))
    assert write_sweep_plot(summary, tmp_path / "p.png").stat().st_size > 1000
