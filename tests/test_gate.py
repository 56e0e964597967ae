"""The regression gate: verdicts, refusals, CI outputs, and pytest-benchmark files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpubench import stats
from gpubench.cli import main
from gpubench.errors import UsageError
from gpubench.gate import FAIL, INCONCLUSIVE, PASS, SKIP, evaluate_gate, load_runs
from gpubench.report.gate_pages import format_gate_report
from gpubench.results import ModeResult, Results, median, read_results, write_results
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
EXPECTATIONS = ROOT / "gates" / "cpu-slots.toml"
SLOTS = ("cpu:0", "cpu:1")
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
    **config_items: Any,
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
        "samples_per_client": "512",
        "local_epochs": 1,
        **config_items,
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


def test_a_rerun_with_other_noise_passes(tmp_path: Path) -> None:
    base = write(tmp_path, "base.json", make_results(seed=0))
    report = evaluate_gate(make_results(seed=1), base)
    assert verdicts(report) == dict.fromkeys(TYPICAL, PASS), report
    assert (
        main(["gate", "--baseline", base, write(tmp_path, "cur.json", make_results(seed=2))]) == 0
    )


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
    report = evaluate_gate(cur, base)
    (v,) = [v for v in report.verdicts if v.mode == "multi-gpu"]
    assert v.verdict == FAIL and "worker 1 died" in (v.message or "")
    assert report.exit_code == 1


def test_without_serial_no_speedup_can_pass(tmp_path: Path) -> None:
    base_results = make_results()
    base = write(tmp_path, "base.json", base_results)
    broken = ModeResult("serial", "failed", error="MemoryError")
    cur = base_results.with_modes((broken, *base_results.modes[1:]))
    report = evaluate_gate(cur, base)
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


def test_a_mode_missing_from_the_baseline_is_skipped(tmp_path: Path) -> None:
    full = make_results()
    base = write(tmp_path, "base.json", full.with_modes(full.modes[:3]))
    report = evaluate_gate(full, base)
    assert verdicts(report)["multi-gpu"] == SKIP and report.exit_code == 0


def _straddling(tmp_path: Path) -> tuple[str, str]:
    # A noisy 10% drop: the interval of the change straddles the 0.90 limit.
    means = {"serial": 1.0, "multi-gpu": 0.5}
    base = make_results(means=means, n=6, seed=3)
    cur = slow_down(make_results(means=means, n=6, seed=4), "multi-gpu", 1.11)
    return write(tmp_path, "base.json", base), write(tmp_path, "cur.json", cur)


def _last_line(out: str) -> str:
    return out.strip().splitlines()[-1]


def test_inconclusive_counts_as_the_user_chooses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, cur = _straddling(tmp_path)
    report = evaluate_gate(load_runs(cur)[0], base)
    assert verdicts(report)["multi-gpu"] == INCONCLUSIVE and report.exit_code == 0
    assert evaluate_gate(load_runs(cur)[0], base, inconclusive="fail").exit_code == 1
    assert evaluate_gate(load_runs(cur)[0], base, strict=True).exit_code == 1
    capsys.readouterr()
    for argv, code, counts in [
        ([], 0, "pass"),  # the default
        (["--inconclusive", "pass"], 0, "pass"),
        (["--inconclusive", "fail"], 1, "fail"),
        (["--strict"], 1, "fail"),  # the older spelling, kept for existing CI scripts
    ]:
        assert main(["gate", "--baseline", base, cur, *argv]) == code, argv
        last = _last_line(capsys.readouterr().out)
        assert last.startswith("gate PASSED" if code == 0 else "gate FAILED"), last
        assert last.endswith(f"(INCONCLUSIVE counts as {counts}: --inconclusive {counts})"), last


def test_the_help_offers_inconclusive_not_strict(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("gate", "compare"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert "--inconclusive {pass,fail}" in out and "default: pass" in out, command
        assert "--strict" not in out, command
    with pytest.raises(SystemExit) as exc:
        main(["gate", "--baseline", "b.json", "c.json", "--inconclusive", "maybe"])
    assert exc.value.code == 2


@pytest.mark.parametrize("inconclusive", ["pass", "fail"])
def test_junit_and_the_step_summary_agree_with_inconclusive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inconclusive: str
) -> None:
    base, cur = _straddling(tmp_path)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    junit = tmp_path / "gate.xml"
    code = main(["gate", "--baseline", base, cur, "--inconclusive", inconclusive,
                 "--junit", str(junit)])  # fmt: skip
    assert code == (1 if inconclusive == "fail" else 0)
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("failures") == ("1" if inconclusive == "fail" else "0")
    prop = suite.find("properties/property[@name='inconclusive']")
    assert prop is not None and prop.get("value") == inconclusive
    (mode,) = [c for c in root.iter("testcase") if c.get("name") == "multi-gpu"]
    failure = mode.find("failure")
    if inconclusive == "fail":
        assert failure is not None and failure.get("type") == INCONCLUSIVE
    else:
        assert failure is None and "counts as: pass" in (mode.findtext("system-out") or "")
    heading = summary.read_text().splitlines()[0]
    assert ("PASSED" if code == 0 else "FAILED") in heading
    assert f"INCONCLUSIVE counts as {inconclusive}" in heading


def test_compare_gates_with_inconclusive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``gpubench compare --gate``: the same options; its exit code follows them."""
    from gpubench.cli import build_parser
    from gpubench.commands.compare import write_outputs

    base, cur = _straddling(tmp_path)
    parser, _ = build_parser()
    results = load_runs(cur)[0][0]
    for argv, code in [([], 0), (["--inconclusive", "fail"], 1), (["--strict"], 1)]:
        args = parser.parse_args(["compare", "--gate", base, *argv])
        assert args.inconclusive == ("fail" if argv else "pass")
        assert write_outputs(results, args, tmp_path / "out.json") == code, argv
        assert "counts as" in _last_line(capsys.readouterr().out)


def test_single_round_runs_never_fail_on_a_point(tmp_path: Path) -> None:
    base = write(tmp_path, "base.json", make_results(n=1))
    cur = slow_down(make_results(n=1, seed=1), "multi-gpu", 1.7)
    report = evaluate_gate(cur, base)
    assert verdicts(report)["multi-gpu"] == INCONCLUSIVE
    assert evaluate_gate(cur, base, strict=True).exit_code == 1


# --- compare's defaults: 3 measured rounds after 1 warm-up ------------------------------------

USER_RUN = ROOT / "tests" / "fixtures" / "report_2slots.json"  # 2 CPU slots, 3 rounds, 1 warm-up


def slow_down_rounds(results: Results, mode: str, factor: float) -> Results:
    """``mode``'s measured rounds ``factor`` times slower: round times and round records."""

    def slower(m: ModeResult) -> ModeResult:
        rounds = tuple(r if r.warmup else replace(r, time_s=r.time_s * factor) for r in m.rounds)
        times = tuple(t * factor for t in m.round_times_s)
        return replace(m, round_times_s=times, rounds=rounds)

    return results.with_modes(tuple(slower(m) if m.name == mode else m for m in results.modes))


def user_run(tmp_path: Path, interleave: bool) -> str:
    """The fixture as written by compare, sequential or ``--interleave`` (3 rounds either way)."""
    user = read_results(USER_RUN)
    user = replace(user, config={**dict(user.config.items()), "interleave": interleave})
    return write(tmp_path, f"user-{interleave}.json", user)


@pytest.mark.parametrize("interleave", [False, True])
def test_compares_defaults_fail_a_mode_17x_slower(tmp_path: Path, interleave: bool) -> None:
    base = user_run(tmp_path, interleave)
    user = read_results(base)
    assert {len(m.round_times_s) for m in user.modes} == {3}
    assert all(stats.spread(m.round_times_s) < 0.03 for m in user.modes)
    cur = write(tmp_path, "slower.json", slow_down_rounds(user, "multi-gpu", 1.7))
    report = evaluate_gate(read_results(cur), base)
    assert verdicts(report) == {"serial": PASS, "threaded": PASS, "multiprocess": PASS,
                                "multi-gpu": FAIL}  # fmt: skip
    (v,) = [v for v in report.verdicts if v.mode == "multi-gpu"]
    assert v.change is not None and v.change.estimated and v.change.high < 0.90
    assert v.change.estimate == pytest.approx(1 / 1.7)
    proc = run_cli("gate", "--baseline", base, cur)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL: multi-gpu" in proc.stdout and "Traceback" not in proc.stderr
    assert _last_line(proc.stdout).startswith("gate FAILED")


@pytest.mark.parametrize("interleave", [False, True])
def test_compares_defaults_pass_a_run_gated_against_itself(
    tmp_path: Path, interleave: bool
) -> None:
    base = user_run(tmp_path, interleave)
    report = evaluate_gate(read_results(base), base)
    assert verdicts(report) == dict.fromkeys(("serial", "threaded", "multiprocess", "multi-gpu"),
                                             PASS)  # fmt: skip
    # PASS, not an INCONCLUSIVE let through: failing INCONCLUSIVE changes nothing
    proc = run_cli("gate", "--baseline", base, base, "--inconclusive", "fail")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _last_line(proc.stdout).startswith("gate PASSED against")


@settings(max_examples=12, derandomize=True, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    factor=st.floats(1.4, 3.0),
    machine=st.floats(0.3, 3.0),
)
def test_a_real_drop_fails_and_a_gain_never_does(seed: int, factor: float, machine: float) -> None:
    """10 rounds at 3% noise: a mode 1.4x-3x slower FAILs; the same mode faster never FAILs.

    ``machine`` scales every round of the current run (a faster or slower CI machine): the
    speedups, and so the verdicts, do not depend on it.
    """
    means = {"serial": 1.0, "multi-gpu": 0.5}
    base = make_results(means=means, seed=seed)
    cur = make_results(means=means, seed=seed + 1)
    cur = cur.with_modes(
        tuple(replace(m, round_times_s=tuple(t * machine for t in m.round_times_s))
              for m in cur.modes)
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = write_results(base, Path(tmp) / "base.json")
        slower = verdicts(evaluate_gate(slow_down(cur, "multi-gpu", factor), path))
        faster = verdicts(evaluate_gate(slow_down(cur, "multi-gpu", 1 / factor), path))
    assert slower["multi-gpu"] == FAIL
    assert faster["multi-gpu"] == PASS


# --- refusals (exit 2) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("other", "words"),
    [
        ({"case": "mlp"}, "case"),
        ({"clients": 16}, "client count (8 vs 16)"),
        ({"devices": ("cpu:0", "cpu:1", "cpu:2")}, "device count (2 vs 3)"),
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
    report = evaluate_gate(make_results(), EXPECTATIONS)
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
    report = evaluate_gate(make_results(means=means), EXPECTATIONS)
    assert verdicts(report)["threaded"] == FAIL


def test_an_expected_mode_that_did_not_run_fails(tmp_path: Path) -> None:
    full = make_results()
    report = evaluate_gate(full.with_modes(full.modes[:3]), EXPECTATIONS)
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
    base = write(tmp_path, "base.json", make_results(seed=7))
    assert main(["gate", "--baseline", base, path]) == 0
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
                "fullname": f"bench_cases/test_benchmarks.py::test_round[{m.name}]",
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
    rerun = write_json(tmp_path, "rerun.json", benchmark_file(make_results(seed=1)))
    assert main(["gate", "--baseline", base, rerun]) == 0
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
            sys.executable, "-m", "pytest", "bench_cases", "-q", "-p", "no:cacheprovider",
            f"--benchmark-json={out}", "--gpubench-clients=2", "--gpubench-samples=64",
            "--gpubench-rounds=3", "--gpubench-warmup=0",
            "--benchmark-max-time=0.1",  # the phase timer's tick: calibrated, not a second
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
        # as a user runs it, not as a worker of this session's pytest-xdist (which would
        # turn the benchmarks off)
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs, kind = load_runs(out)
    assert kind == "pytest-benchmark" and len(runs) == 1
    modes = {m.name: m for m in runs[0].modes}
    assert len(modes) >= 4 and all(len(m.round_times_s) == 3 for m in modes.values())
    # the physics may not hold on a loaded machine; the file must still give a speedup for
    # every expected mode (a refusal would raise; a mode without rounds would have none)
    report = evaluate_gate(runs, EXPECTATIONS)
    checked = {v.mode: v for v in report.verdicts}
    assert {"serial", "threaded", "multiprocess", "multi-gpu"} <= set(checked)
    assert all(v.speedup is not None for v in checked.values()), report


# --- runs that did not measure the same work (exit 2, never a verdict) ----------------------


def test_a_cpu_slot_run_is_not_gated_against_a_one_gpu_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write(tmp_path, "gpu.json", make_results(devices=("cuda:0",)))
    cur = write(tmp_path, "cpu.json", make_results(devices=SLOTS))
    assert main(["gate", "--baseline", base, cur]) == 2
    err = capsys.readouterr().err
    assert "device kind (cpu vs cuda)" in err and "device count (2 vs 1)" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    with pytest.raises(UsageError, match="did not measure the same work"):
        evaluate_gate(make_results(devices=SLOTS), base)


@pytest.mark.parametrize(
    ("setting", "other", "words"),
    [
        ("batch_size", 128, "batch size (64 vs 128)"),
        ("samples_per_client", "256", "samples per client (512 vs 256)"),
        ("local_epochs", 2, "local epochs (1 vs 2)"),
    ],
)
def test_runs_with_other_training_settings_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str, other: Any, words: str
) -> None:
    base = write(tmp_path, "base.json", make_results(**{setting: other}))
    cur = write(tmp_path, "cur.json", make_results())
    assert main(["gate", "--baseline", base, cur]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_a_setting_one_run_does_not_record_is_not_held_against_it(tmp_path: Path) -> None:
    old = make_results(seed=3)
    old = replace(old, config={k: v for k, v in old.config.items() if k != "local_epochs"})
    report = evaluate_gate(make_results(), write(tmp_path, "old.json", old))
    assert verdicts(report)["multi-gpu"] == PASS


def test_expectations_apply_by_device_kind(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no expectation .* applies"):
        evaluate_gate(make_results(devices=("cuda:0", "cuda:1")), EXPECTATIONS)


# --- truth: a mode that computed something else never passes --------------------------------


def with_fields(mode: ModeResult, **fields: Any) -> ModeResult:
    """``replace`` for the fields ModeResult has; the others set on the instance."""
    own = {k: v for k, v in fields.items() if hasattr(mode, k)}
    out = replace(mode, **own)
    for key, value in fields.items():
        if key not in own:
            object.__setattr__(out, key, value)
    return out


def _with_mode(results: Results, name: str, **fields: Any) -> Results:
    return results.with_modes(
        tuple(with_fields(m, **fields) if m.name == name else m for m in results.modes)
    )


def test_a_mode_whose_result_differs_fails_with_the_reason(tmp_path: Path) -> None:
    base = write(tmp_path, "base.json", make_results(seed=5))
    wrong = _with_mode(
        make_results(), "multi-gpu", same_result=False, worst_client=3, worst_round=2,
        worst_client_diff=0.41, extra={"tolerance": 0.001},
    )  # fmt: skip
    for baseline in (base, EXPECTATIONS):
        report = evaluate_gate(wrong, baseline)
        (v,) = [v for v in report.verdicts if v.mode == "multi-gpu"]
        assert v.verdict == FAIL and report.exit_code == 1
        assert v.message == (
            "multi-gpu: result differs from serial: client 3, round 2, "
            "relative diff 0.41 > tolerance 0.001"
        )
        assert v.result == "differs"


def test_a_differing_mode_fails_in_the_cli_from_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = _with_mode(make_results(), "threaded", same_result=False, max_abs_diff_vs_serial=3e-3)
    wrong = replace(wrong, config={**wrong.config, "tolerance_used": 1e-5})
    cur = write(tmp_path, "cur.json", wrong)
    assert main(["gate", "--baseline", str(EXPECTATIONS), cur]) == 1
    out = capsys.readouterr().out
    assert "FAIL: threaded: result differs from serial: max abs diff 0.003 > tolerance 1e-05" in out


def test_a_not_reproducible_mode_is_checked_on_speed_but_never_shown_as_same() -> None:
    why = "the case draws from torch's global RNG (Dropout) and the threads share it"
    results = _with_mode(
        make_results(), "threaded", same_result=None, reproducible=False,
        not_reproducible_reason=why,
    )  # fmt: skip
    report = evaluate_gate(results, EXPECTATIONS)
    (v,) = [v for v in report.verdicts if v.mode == "threaded"]
    assert v.verdict == PASS and v.result == f"not reproducible: {why}"
    assert {x.mode: x.result for x in report.verdicts}["multi-gpu"] == "not compared"
    assert report.exit_code == 0
    out = format_gate_report(report)
    (row,) = [line for line in out.splitlines() if line.startswith("threaded ")]
    assert "not reproducible" in row and "same" not in row
    assert f"PASS: threaded: speed only; not reproducible: {why}" in out


def test_a_mode_with_the_same_result_says_so() -> None:
    results = _with_mode(make_results(), "multi-gpu", same_result=True)
    report = evaluate_gate(results, EXPECTATIONS)
    assert {v.mode: v.result for v in report.verdicts}["multi-gpu"] == "same"


# --- bad input: nothing measured (exit 2, one line) ---------------------------------------


def _nothing_measured(tmp_path: Path) -> list[tuple[str, str]]:
    empty = Results(environment={}, config={"case": "cnn"}, modes=())
    full = make_results()
    unmeasured = full.with_modes(tuple(replace(m, round_times_s=()) for m in full.modes))
    return [
        (write(tmp_path, "empty.json", empty), "holds no modes"),
        (write(tmp_path, "unmeasured.json", unmeasured), "has no measured rounds"),
    ]


@pytest.mark.parametrize("command", ["gate", "report", "predict"])
def test_a_file_with_nothing_measured_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    good = write(tmp_path, "good.json", make_results())
    for path, words in _nothing_measured(tmp_path):
        argv = {
            "gate": ["gate", "--baseline", good, path],
            "report": ["report", path, "-o", str(tmp_path / "r.md")],
            "predict": ["predict", path, "--devices", "2"],
        }[command]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r.md").exists()


def test_a_baseline_with_nothing_measured_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cur = write(tmp_path, "cur.json", make_results())
    for path, words in _nothing_measured(tmp_path):
        assert main(["gate", "--baseline", path, cur]) == 2
        assert words in capsys.readouterr().err


def test_the_help_names_commands_that_exist(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["gate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--json" not in out and "gpubench compare --out" in out


# --- interleaved runs: paired rounds -------------------------------------------------------


def drifting_run(seed: int, mode_speed: float, interleave: bool, n: int = 10) -> Results:
    """Serial and multi-gpu under 15% drift common to each round and 3% noise of their own."""
    rng = np.random.default_rng(seed)
    drift = np.exp(rng.normal(0.0, 0.15, n))
    serial = drift * np.exp(rng.normal(0.0, 0.03, n))
    mode = drift * np.exp(rng.normal(0.0, 0.03, n)) / mode_speed
    return Results(
        environment={},
        config={"case": "cnn", "clients": 8, "device_ids": list(SLOTS), "interleave": interleave},
        modes=(
            ModeResult("serial", "ok", devices=SLOTS[:1], round_times_s=tuple(serial)),
            ModeResult("multi-gpu", "ok", devices=SLOTS, round_times_s=tuple(mode)),
        ),
    )


def test_an_interleaved_run_pairs_rounds_so_common_drift_cancels(tmp_path: Path) -> None:
    outcomes = {}
    for interleave in (False, True):
        base = write(tmp_path, f"base-{interleave}.json", drifting_run(1, 1.9, interleave))
        cur = drifting_run(2, 1.9 * 0.75, interleave)  # a real 25% drop
        report = evaluate_gate(cur, base)
        (v,) = [v for v in report.verdicts if v.mode == "multi-gpu"]
        outcomes[interleave] = (v.verdict, v.paired)
    # the same numbers: drift hides the drop from the unpaired statistic, not from the paired
    assert outcomes == {False: (INCONCLUSIVE, False), True: (FAIL, True)}


def test_the_gate_table_says_when_rounds_were_paired(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write(tmp_path, "base.json", drifting_run(1, 1.9, True))
    assert (
        main(["gate", "--baseline", base, write(tmp_path, "c.json", drifting_run(3, 1.9, True))])
        == 0
    )
    assert "pair each mode round with serial's round" in capsys.readouterr().out
