"""The regression gate: verdicts, refusals, CI outputs, and pytest-benchmark files."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpubench.cli import main
from gpubench.gate import FAIL, INCONCLUSIVE, PASS, SKIP, load_runs, run_gate
from gpubench.results import ModeResult, Results, median, write_results

ROOT = Path(__file__).resolve().parents[1]
EXPECTATIONS = ROOT / "gates" / "cpu-slots.toml"
SLOTS = ("cpu-slot:0", "cpu-slot:1")
# median round times of each mode on 2 CPU slots, in seconds
TYPICAL = {"serial": 1.0, "threaded": 1.15, "multiprocess": 1.03, "multi-gpu": 0.53}


def _rounds(seed: int, mean: float, n: int = 10, noise: float = 0.03) -> tuple[float, ...]:
    rng = np.random.default_rng(seed)
    return tuple(float(t) for t in mean * np.exp(rng.normal(0.0, noise, n)))


def make_results(
    case: str = "cnn",
    clients: int = 8,
    devices: tuple[str, ...] = SLOTS,
    seed: int = 0,
    n: int = 10,
    means: dict[str, float] | None = None,
) -> Results:
    modes = []
    for i, (name, mean) in enumerate((means or TYPICAL).items()):
        used = devices if name == "multi-gpu" else devices[:1]
        modes.append(
            ModeResult(name, "ok", devices=used, round_times_s=_rounds(seed * 10 + i, mean, n))
        )
    serial = median(modes[0].round_times_s)
    modes = [replace(m, speedup_vs_serial=serial / median(m.round_times_s)) for m in modes]
    config = {
        "case": case,
        "clients": clients,
        "batch_size": 64,
        "devices": "auto",
        "device_ids": list(devices),
    }
    return Results(environment={}, config=config, modes=tuple(modes))


def slow_down(results: Results, mode: str, factor: float) -> Results:
    return results.with_modes(
        tuple(
            replace(m, round_times_s=tuple(t * factor for t in m.round_times_s))
            if m.name == mode
            else m
            for m in results.modes
        )
    )


def write(tmp_path: Path, name: str, results: Results) -> str:
    return str(write_results(results, tmp_path / name))


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def verdicts(report) -> dict[str, str]:
    return {v.mode: v.verdict for v in report.verdicts}


# --- against an earlier run ---------------------------------------------------------------


def test_a_results_file_gated_against_itself_passes(tmp_path: Path) -> None:
    path = write(tmp_path, "run.json", make_results())
    report = run_gate(load_runs(path)[0], path)
    assert report.exit_code == 0
    assert verdicts(report) == dict.fromkeys(TYPICAL, PASS)
    assert main(["gate", "--baseline", path, path]) == 0


def test_a_rerun_with_other_noise_passes(tmp_path: Path) -> None:
    base = write(tmp_path, "base.json", make_results(seed=0))
    report = run_gate(make_results(seed=1), base)
    assert report.exit_code == 0, report


def test_multi_gpu_17x_slower_fails_in_the_real_cli(tmp_path: Path) -> None:
    base_results = make_results()
    base = write(tmp_path, "base.json", base_results)
    cur = write(tmp_path, "cur.json", slow_down(base_results, "multi-gpu", 1.7))
    proc = subprocess.run(
        [sys.executable, "-m", "gpubench", "gate", "--baseline", base, cur],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    before = base_results.mode("multi-gpu").speedup_vs_serial  # type: ignore[union-attr]
    after = before / 1.7
    fail_lines = [line for line in proc.stdout.splitlines() if line.startswith("FAIL:")]
    assert len(fail_lines) == 1, out
    assert "multi-gpu" in fail_lines[0]
    assert f"{before:.2f}x" in fail_lines[0] and f"{after:.2f}x" in fail_lines[0]


def test_every_failing_mode_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base_results = make_results()
    base = write(tmp_path, "base.json", base_results)
    cur = slow_down(slow_down(base_results, "multi-gpu", 1.7), "threaded", 1.5)
    assert main(["gate", "--baseline", base, write(tmp_path, "cur.json", cur)]) == 1
    out = capsys.readouterr().out
    assert "FAIL: multi-gpu" in out and "FAIL: threaded" in out and "2 FAIL" in out


def test_max_drop_widens_the_allowance(tmp_path: Path) -> None:
    base_results = make_results()
    base = write(tmp_path, "base.json", base_results)
    cur = write(tmp_path, "cur.json", slow_down(base_results, "multi-gpu", 1.7))
    assert main(["gate", "--baseline", base, cur, "--max-drop", "60%"]) == 0
    assert main(["gate", "--baseline", base, cur, "--max-drop", "0.3"]) == 1


def test_a_mode_that_failed_to_run_fails(tmp_path: Path) -> None:
    base_results = make_results()
    base = write(tmp_path, "base.json", base_results)
    broken = ModeResult("multi-gpu", "failed", error="worker 1 died (exit code -9)\nmore")
    cur = base_results.with_modes(
        tuple(broken if m.name == "multi-gpu" else m for m in base_results.modes)
    )
    report = run_gate(cur, base)
    (v,) = [v for v in report.verdicts if v.mode == "multi-gpu"]
    assert v.verdict == FAIL and "worker 1 died" in (v.message or "")
    assert report.exit_code == 1


def test_without_serial_no_speedup_can_pass(tmp_path: Path) -> None:
    base_results = make_results()
    base = write(tmp_path, "base.json", base_results)
    broken = ModeResult("serial", "failed", error="MemoryError")
    cur = base_results.with_modes((broken, *base_results.modes[1:]))
    report = run_gate(cur, base)
    assert set(verdicts(report).values()) == {FAIL}
    assert "no serial rounds" in (report.verdicts[-1].message or "")


def test_device_count_comes_from_the_most_specific_record() -> None:
    from gpubench.gate import device_count

    r = make_results()
    assert device_count(r) == 2
    bare = Results(environment={}, config={"devices": "cpu:3"}, modes=())
    assert device_count(bare) == 3
    assert device_count(replace(bare, config={"devices": "cuda:0,2"})) == 2
    assert device_count(replace(bare, config={"devices": "auto"})) is None


def test_a_saved_speedup_stands_in_for_missing_round_times(tmp_path: Path) -> None:
    full = make_results()
    base = write(tmp_path, "base.json", full)
    stripped = full.with_modes(tuple(replace(m, round_times_s=()) for m in full.modes))
    report = run_gate(stripped, base)
    assert report.exit_code == 0
    assert any("point estimate" in n for v in report.verdicts for n in v.notes)


def test_a_mode_missing_from_the_baseline_is_skipped(tmp_path: Path) -> None:
    full = make_results()
    base = write(tmp_path, "base.json", full.with_modes(full.modes[:3]))
    report = run_gate(full, base)
    assert verdicts(report)["multi-gpu"] == SKIP and report.exit_code == 0


def _straddling(tmp_path: Path) -> tuple[str, str]:
    # A noisy 10% drop: the interval of the change straddles the 0.90 limit.
    means = {"serial": 1.0, "multi-gpu": 0.5}
    base = make_results(means=means, n=6, seed=3)
    cur = slow_down(make_results(means=means, n=6, seed=4), "multi-gpu", 1.11)
    return write(tmp_path, "base.json", base), write(tmp_path, "cur.json", cur)


def test_inconclusive_passes_unless_strict(tmp_path: Path) -> None:
    base, cur = _straddling(tmp_path)
    report = run_gate(load_runs(cur)[0], base)
    assert verdicts(report)["multi-gpu"] == INCONCLUSIVE and report.exit_code == 0
    assert run_gate(load_runs(cur)[0], base, strict=True).exit_code == 1
    assert main(["gate", "--baseline", base, cur]) == 0
    assert main(["gate", "--baseline", base, cur, "--strict"]) == 1


def test_single_round_runs_never_fail_on_a_point(tmp_path: Path) -> None:
    base = write(tmp_path, "base.json", make_results(n=1))
    cur = slow_down(make_results(n=1, seed=1), "multi-gpu", 1.7)
    report = run_gate(cur, base)
    assert verdicts(report)["multi-gpu"] == INCONCLUSIVE
    assert run_gate(cur, base, strict=True).exit_code == 1


@settings(max_examples=15, derandomize=True, deadline=None)
@given(
    times=st.lists(st.floats(0.01, 10.0), min_size=1, max_size=8),
    factor=st.floats(0.2, 5.0),
)
def test_any_run_gated_against_itself_passes(times: list[float], factor: float) -> None:
    results = Results(
        environment={},
        config={"case": "cnn", "clients": 4, "devices": "cpu:2"},
        modes=(
            ModeResult("serial", "ok", round_times_s=tuple(times)),
            ModeResult("multi-gpu", "ok", round_times_s=tuple(t * factor for t in times)),
        ),
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = write_results(results, Path(tmp) / "r.json")
        assert run_gate(results, path).exit_code == 0


# --- refusals (exit 2) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("other", "words"),
    [
        ({"case": "mlp"}, "case"),
        ({"clients": 16}, "client count (8 vs 16)"),
        ({"devices": ("cpu-slot:0", "cpu-slot:1", "cpu-slot:2")}, "device count (2 vs 3)"),
    ],
)
def test_runs_that_differ_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], other: dict[str, Any], words: str
) -> None:
    base = write(tmp_path, "base.json", make_results(**other))
    cur = write(tmp_path, "cur.json", make_results())
    assert main(["gate", "--baseline", base, cur]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ("[[expect]]\nmode = 'serial'\n", "min_speedup and/or max_speedup"),
        ("[[expect]]\nmode = 'serial'\nmax_speedup = 'x'\n", "max_speedup must be a float"),
        ("[[expect]]\nmode = 'serial'\nmin = 1.0\n", "unknown key(s) min"),
        ("[[expect]\n", "not valid TOML"),
        ("[[expect]]\ncase = 'mlp'\nmode = 'serial'\nmax_speedup = 1.1\n", "no expectation"),
        ("[[expect]]\nmode='m'\nmin_speedup = 2.0\nmax_speedup = 1.0\n", "above max_speedup"),
    ],
)
def test_bad_expectations_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, words: str
) -> None:
    gate_file = tmp_path / "gate.toml"
    gate_file.write_text(toml)
    cur = write(tmp_path, "cur.json", make_results())
    assert main(["gate", "--baseline", str(gate_file), cur]) == 2
    assert words in capsys.readouterr().err


def test_unusable_files_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cur = write(tmp_path, "cur.json", make_results())
    (tmp_path / "junk.json").write_text("{not json")
    assert main(["gate", "--baseline", str(tmp_path / "missing.json"), cur]) == 2
    assert main(["gate", "--baseline", str(tmp_path / "junk.json"), cur]) == 2
    assert main(["gate", "--baseline", cur, str(tmp_path / "junk.json")]) == 2
    assert "Traceback" not in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["gate", "--baseline", cur, cur, "--max-drop", "1.5"])
    assert exc.value.code == 2


# --- expectations -------------------------------------------------------------------------


def test_project_expectations_pass_on_a_healthy_run(tmp_path: Path) -> None:
    report = run_gate(make_results(), EXPECTATIONS)
    assert report.baseline_kind == "expectations"
    assert verdicts(report) == dict.fromkeys(TYPICAL, PASS)


def test_project_expectations_fail_when_multi_device_does_not_scale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cur = write(tmp_path, "cur.json", slow_down(make_results(), "multi-gpu", 1.7))
    assert main(["gate", "--baseline", str(EXPECTATIONS), cur]) == 1
    out = capsys.readouterr().out
    assert "FAIL: multi-gpu" in out and ">= 1.50x" in out


def test_single_device_mode_above_one_fails(tmp_path: Path) -> None:
    means = dict(TYPICAL, threaded=0.6)  # physics says it cannot beat serial on one slot
    report = run_gate(make_results(means=means), EXPECTATIONS)
    assert verdicts(report)["threaded"] == FAIL


def test_an_expected_mode_that_did_not_run_fails(tmp_path: Path) -> None:
    full = make_results()
    report = run_gate(full.with_modes(full.modes[:3]), EXPECTATIONS)
    assert verdicts(report)["multi-gpu"] == FAIL


# --- CI outputs ---------------------------------------------------------------------------


def test_junit_has_one_testcase_per_mode(tmp_path: Path) -> None:
    base_results = make_results()
    base = write(tmp_path, "base.json", base_results)
    cur = write(tmp_path, "cur.json", slow_down(base_results, "multi-gpu", 1.7))
    junit = tmp_path / "out" / "gate.xml"
    assert main(["gate", "--baseline", base, cur, "--junit", str(junit)]) == 1
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == list(TYPICAL)
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == ["multi-gpu"]
    assert "multi-gpu" in (cases[-1].find("failure").get("message") or "")  # type: ignore[union-attr]
    assert root.find("testsuite").get("failures") == "1"  # type: ignore[union-attr]


def test_step_summary_is_appended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    path = write(tmp_path, "run.json", make_results())
    assert main(["gate", "--baseline", path, path]) == 0
    assert main(["gate", "--baseline", str(EXPECTATIONS), path]) == 0
    text = summary.read_text()
    assert text.startswith("# earlier step\n")
    assert text.count("gpubench gate PASSED") == 2 and "| multi-gpu" in text


# --- pytest-benchmark files ---------------------------------------------------------------


def benchmark_file(results: Results, drop_data: bool = False) -> dict[str, Any]:
    benchmarks = []
    for m in results.modes:
        stats: dict[str, Any] = {"median": median(m.round_times_s), "rounds": len(m.round_times_s)}
        if not drop_data:
            stats["data"] = list(m.round_times_s)
        benchmarks.append(
            {
                "group": f"gpubench-{results.config['case']}",
                "name": f"test_round[{results.config['case']}-{m.name}]",
                "fullname": f"benchmarks/test_benchmarks.py::test_round[{m.name}]",
                "extra_info": {
                    "gpubench_mode": m.name,
                    "gpubench_case": results.config["case"],
                    "clients": results.config["clients"],
                    "devices": len(results.config["device_ids"]),
                    "device_ids": list(m.devices),
                    "speedup_vs_serial": m.speedup_vs_serial,
                },
                "stats": stats,
            }
        )
    benchmarks.append({"name": "test_unrelated", "extra_info": {}, "stats": {"data": [1.0]}})
    return {"machine_info": {"node": "ci"}, "commit_info": {}, "benchmarks": benchmarks}


def write_json(tmp_path: Path, name: str, data: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_pytest_benchmark_files_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    healthy = make_results()
    base = write_json(tmp_path, "base.json", benchmark_file(healthy))
    slow = write_json(tmp_path, "slow.json", benchmark_file(slow_down(healthy, "multi-gpu", 1.7)))
    runs, kind = load_runs(base)
    assert kind == "pytest-benchmark" and len(runs) == 1
    assert [m.name for m in runs[0].modes] == list(TYPICAL)
    assert main(["gate", "--baseline", base, base]) == 0
    assert main(["gate", "--baseline", base, slow]) == 1
    assert "FAIL: multi-gpu" in capsys.readouterr().out
    assert main(["gate", "--baseline", str(EXPECTATIONS), base]) == 0
    assert main(["gate", "--baseline", str(EXPECTATIONS), slow]) == 1
    # a results file and a pytest-benchmark file of the same case compare with each other
    assert main(["gate", "--baseline", write(tmp_path, "r.json", healthy), base]) == 0


def test_pytest_benchmark_file_without_raw_times_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_json(tmp_path, "b.json", benchmark_file(make_results(), drop_data=True))
    assert main(["gate", "--baseline", path, path]) == 2
    assert "--benchmark-save-data" in capsys.readouterr().err


def test_pytest_benchmark_file_without_gpubench_benchmarks_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_json(tmp_path, "b.json", {"machine_info": {}, "benchmarks": []})
    assert main(["gate", "--baseline", path, path]) == 2
    assert "gpubench_mode" in capsys.readouterr().err


@pytest.mark.slow
def test_the_benchmark_suite_writes_a_file_that_gates(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "benchmarks", "-q", "-p", "no:cacheprovider",
            f"--benchmark-json={out}", "--gpubench-clients=2", "--gpubench-samples=64",
            "--gpubench-rounds=3",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs, kind = load_runs(out)
    assert kind == "pytest-benchmark" and len(runs) == 1
    modes = {m.name: m for m in runs[0].modes}
    assert len(modes) >= 4 and all(len(m.round_times_s) == 3 for m in modes.values())
    assert main(["gate", "--baseline", str(out), str(out)]) == 0
    # the physics may not hold on a loaded machine; the file must still be usable
    assert main(["gate", "--baseline", str(EXPECTATIONS), str(out)]) in (0, 1)
