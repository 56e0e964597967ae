"""The history: store, change points, check, gate --history, plot and Otava export.

Series of results files are made from a real one (tests/fixtures/report_2slots.json) with
its round times scaled per commit (tests/history_series.py).
"""

from __future__ import annotations

import json
import math
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from gpubench.history import (
    MIN_MAGNITUDE,
    add_entries,
    change_points,
    check_history,
    entries_of,
    otava_tables,
    read_store,
)
from gpubench.report.history_plots import draw_history, history_panels
from gpubench.results import from_dict
from tests.conftest import cli_in_process
from tests.history_series import commit_of, results_series, write_series


def _store(tmp_path: Path, series: list[dict], name: str = "runs") -> Path:
    store = tmp_path / "history.jsonl"
    for path in write_series(tmp_path / name, series):
        assert cli_in_process("history", "add", str(path), "--store", str(store)).returncode == 0
    return store


def _check(store: Path, *extra: str):
    return cli_in_process("history", "check", "--store", str(store), *extra)


def test_a_23_percent_drop_from_the_7th_commit_fails_naming_it(tmp_path):
    store = _store(tmp_path, results_series(12, drop=0.23, drop_at=7, noise=0.03))
    done = _check(store)
    assert done.returncode == 1, done.stdout
    assert f"drop from commit {commit_of(7)}" in done.stdout
    assert "REGRESSION: multi-gpu fell" in done.stdout and commit_of(7) in done.stdout
    assert done.stdout.count("drop from commit") == 1  # only multi-gpu changed


def test_noise_alone_exits_0_without_a_change_point(tmp_path):
    store = _store(tmp_path, results_series(12, noise=0.03, seed=1))
    done = _check(store)
    assert done.returncode == 0, done.stdout
    assert done.stdout.count("no change point") == 3
    assert "0 change point(s)" in done.stdout


def test_an_improvement_is_reported_and_passes(tmp_path):
    store = _store(tmp_path, results_series(12, drop=-0.30, drop_at=7, seed=2))
    done = _check(store)
    assert done.returncode == 0
    assert f"improvement from commit {commit_of(7)}" in done.stdout


def test_max_drop_decides_the_exit(tmp_path):
    store = _store(tmp_path, results_series(12, drop=0.23, drop_at=7))
    assert _check(store, "--max-drop", "30%").returncode == 0
    assert _check(store, "--max-drop", "0.10").returncode == 1


def test_adding_the_same_file_twice_is_one_entry(tmp_path):
    path = write_series(tmp_path / "one", results_series(1))[0]
    store = tmp_path / "h.jsonl"
    cli_in_process("history", "add", str(path), "--store", str(store))
    again = cli_in_process("history", "add", str(path), str(path), "--store", str(store))
    assert "0 entries added, 6 already there" in again.stdout
    assert len(store.read_text().splitlines()) == 3  # threaded, multiprocess, multi-gpu


def _add_all(args: tuple[str, list[str]]) -> None:
    store, paths = args
    for path in paths:
        entries = entries_of(from_dict(json.loads(Path(path).read_text())))
        add_entries(store, entries)


def test_two_writers_at_once_lose_nothing(tmp_path):
    paths = [str(p) for p in write_series(tmp_path / "runs", results_series(16))]
    store = str(tmp_path / "h.jsonl")
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_add_all, [(store, paths[0::2]), (store, paths[1::2])])
    read = read_store(store)
    assert not read.notes
    assert len(read.entries) == 16 * 3
    assert len({(e.run, e.mode) for e in read.entries}) == 16 * 3


def test_a_corrupt_line_is_reported_skipped_and_kept(tmp_path):
    store = _store(tmp_path, results_series(12, drop=0.23))
    lines = store.read_text().splitlines()
    store.write_text("\n".join([*lines[:5], '{"run": "x", broken', *lines[5:]]) + "\n")
    done = _check(store)
    assert done.returncode == 1 and not done.stderr
    assert f"{store}:6: not a history entry" in done.stdout
    path = write_series(tmp_path / "more", results_series(13, seed=9))[-1]
    cli_in_process("history", "add", str(path), "--store", str(store))
    assert '{"run": "x", broken' in store.read_text()  # an add keeps what it cannot read


def test_a_line_of_a_newer_schema_is_skipped_with_a_note(tmp_path):
    store = _store(tmp_path, results_series(12, seed=3))
    future = json.loads(store.read_text().splitlines()[0])
    future.update(history_schema=99, run="future")
    with store.open("a") as fh:
        fh.write(json.dumps(future) + "\n")
    done = _check(store)
    assert done.returncode == 0
    assert "schema 99 is newer than this gpubench understands (1); skipped" in done.stdout
    assert len(read_store(store).entries) == 36


def test_another_testbed_is_a_separate_series(tmp_path):
    store = _store(tmp_path, results_series(12, seed=4))
    other = results_series(12, drop=0.23, seed=5, environment={"torch": "2.5.0+cpu"})
    for path in write_series(tmp_path / "other", other):
        cli_in_process("history", "add", str(path), "--store", str(store))
    done = _check(store)
    assert done.returncode == 1
    assert done.stdout.count("12 runs") == 6  # 3 modes x 2 testbeds, none mixed
    assert "multi-gpu fell" in done.stdout
    head = [line for line in done.stdout.splitlines() if line.startswith("multi-gpu")]
    assert "torch 2.4.1+cpu" in head[0] and "torch 2.5.0+cpu" in head[1]


def test_a_disturbed_run_is_kept_but_left_out_of_the_detection(tmp_path):
    series = results_series(12, seed=6)
    series[3]["modes"][3]["other_load_pct"] = {"cpu:1": 48.0}
    series[3]["modes"][3]["round_times_s"] = [t * 2 for t in series[3]["modes"][3]["round_times_s"]]
    store = _store(tmp_path, series)
    done = _check(store)
    assert done.returncode == 0
    assert "multi-gpu | " in done.stdout and "11 runs, 1 not used" in done.stdout
    busy = [e for e in read_store(store).entries if e.disturbed]
    assert len(busy) == 1 and "48% of cpu:1" in str(busy[0].disturbed)


def test_the_cap_drops_the_oldest_of_that_series_only(tmp_path):
    store = tmp_path / "h.jsonl"
    runs = [from_dict(d) for d in results_series(6, seed=7)]
    for run in runs:
        add_entries(store, [e for e in entries_of(run) if e.mode == "multi-gpu"], cap=4)
    add_entries(store, [e for e in entries_of(runs[0]) if e.mode == "threaded"], cap=4)
    kept = read_store(store).entries
    assert [e.commit for e in kept if e.mode == "multi-gpu"] == [commit_of(i) for i in (3, 4, 5, 6)]
    assert [e.mode for e in kept].count("threaded") == 1


# --- the detection itself -------------------------------------------------------------------


def test_a_step_below_the_minimum_magnitude_is_no_change_point():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.002, 20)
    small = [math.log(1 - 0.6 * MIN_MAGNITUDE) if i >= 10 else 0.0 for i in range(20)]
    large = [math.log(1 - 1.6 * MIN_MAGNITUDE) if i >= 10 else 0.0 for i in range(20)]
    assert change_points(small + noise) == []
    (split,) = change_points(large + noise)
    assert split.index == 10 and split.p_value < 1e-6


def test_significance_decides_a_noisy_step():
    rng = np.random.default_rng(1)
    logs = [(-0.12 if i >= 5 else 0.0) + rng.normal(0, 0.06) for i in range(10)]
    (split,) = change_points(logs, max_p=0.05)
    assert 0.001 < split.p_value < 0.05
    assert change_points(logs) == []  # MAX_P = 0.001


def test_false_alarms_and_detections_on_simulated_series():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from history_error_rates import rates

    rng = np.random.default_rng(0)
    assert rates(rng, 100, 30, 0.05, 0.0)[2] == 0.0  # no exit 1 at --max-drop 10% on noise
    assert rates(rng, 100, 30, 0.02, 0.0)[0] == 0.0  # no change point at all
    assert rates(rng, 50, 10, 0.05, 0.25)[0] >= 0.9
    assert rates(rng, 50, 30, 0.02, 0.10)[0] >= 0.9


# --- gate --history, plot, export, bad input ------------------------------------------------


def test_gate_against_the_history_level(tmp_path):
    store = _store(tmp_path, results_series(12, seed=8))
    dropped = write_series(tmp_path / "new", results_series(1, drop=0.23, drop_at=1, seed=9))[0]
    steady = write_series(tmp_path / "ok", results_series(1, seed=10))[0]
    fail = cli_in_process("gate", "--history", str(store), str(dropped))
    assert fail.returncode == 1 and "FAIL: multi-gpu" in fail.stdout
    assert "of the level" in fail.stdout
    assert cli_in_process("gate", "--history", str(store), str(steady)).returncode == 0
    short = tmp_path / "short.jsonl"
    for path in sorted((tmp_path / "runs").glob("*.json"))[:2]:
        cli_in_process("history", "add", str(path), "--store", str(short))
    skip = cli_in_process("gate", "--history", str(short), str(dropped))
    assert skip.returncode == 0 and "needs 3" in skip.stdout


def test_plot_draws_levels_whiskers_and_the_change_point(tmp_path):
    series = results_series(12, drop=0.23, seed=11)
    series[2]["modes"][3]["same_result"] = False
    store = _store(tmp_path, series)
    checked = check_history(read_store(store).entries).series
    (panel,) = history_panels(checked)
    assert panel.commits[6] == commit_of(7)[:8]
    multi = next(line for line in panel.lines if line.mode == "multi-gpu")
    assert [(x0, x1) for x0, x1, _ in multi.steps] == [(0, 5), (6, 11)]
    assert multi.changes[0][:2] == (6, commit_of(7))
    assert multi.steps[1][2] / multi.steps[0][2] == pytest.approx(0.77, abs=0.03)
    assert [p.usable for p in multi.points].count(False) == 1
    assert all(p.low <= p.speedup <= p.high for p in multi.points)
    out = tmp_path / "history.png"
    done = cli_in_process("history", "plot", "--store", str(store), "-o", str(out))
    assert done.returncode == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert draw_history(checked, tmp_path / "again.png") == [panel]


def test_otava_csv_export(tmp_path):
    series = results_series(4, seed=12)
    series[1]["modes"][3]["other_load_pct"] = {"cpu:1": 30.0}
    store = _store(tmp_path, series)
    done = cli_in_process("history", "export", "--store", str(store), "--format", "otava-csv")
    lines = done.stdout.splitlines()
    assert lines[0] == "time,commit,threaded,multiprocess,multi-gpu"
    assert len(lines) == 5 and lines[1].startswith(f"2025-02-01T12:00:00Z,{commit_of(1)},")
    assert lines[2].endswith(",")  # the busy run's multi-gpu: no speedup to export
    (table,) = otava_tables(read_store(store).entries)
    assert table.text == done.stdout


@pytest.mark.parametrize("argv, message", [
    (["history", "check", "--store", "/nonexistent/h.jsonl"], "no history store at"),
    (["history", "add", "tests/fixtures/report_2slots.json", "--store", "/dev/null/h"],
     "--store"),
    (["history", "add", "README.md"], "not valid JSON"),
    (["history", "plot", "--store", "tests/fixtures/report_2slots.json", "-o", "x.txt"],
     ".png"),
    (["history", "check", "--max-drop", "2"], "must be in [0, 1)"),
    (["gate", "--history", "/nonexistent/h.jsonl", "tests/fixtures/report_2slots.json"],
     "no history store at"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message):
    done = cli_in_process(*argv)
    assert done.returncode == 2, done
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_export_of_two_testbeds_needs_a_folder(tmp_path):
    store = _store(tmp_path, results_series(2, seed=13))
    for path in write_series(tmp_path / "b", results_series(2, environment={"torch": "2.5"})):
        cli_in_process("history", "add", str(path), "--store", str(store))
    done = cli_in_process("history", "export", "--store", str(store))
    assert done.returncode == 2 and "-o FOLDER" in done.stderr
    folder = tmp_path / "csv"
    folder.mkdir()
    assert cli_in_process("history", "export", "--store", str(store), "-o",
                          str(folder)).returncode == 0
    assert len(list(folder.glob("*.csv"))) == 2
