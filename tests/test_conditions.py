"""Verdicts that know their conditions: other programs' load named, and never called a
regression, an improvement or a balance problem of the code.

From results alone (no measuring): a run whose multi-gpu rounds ran beside another program on
slot 1 (the user's busy-core-1 run) against the same run measured quietly."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from gpubench.faq.inputs import FaqInputs
from gpubench.faq.verdicts import batch_part, multi_device_part
from gpubench.findings import compute_findings
from gpubench.gate import evaluate_gate
from gpubench.gate.verdicts import FAIL, INCONCLUSIVE, PASS
from gpubench.report import measures
from gpubench.report.findings import format_findings
from gpubench.report.tables import format_performance_table
from gpubench.results import (
    OTHER_LOAD_LIMIT_PCT,
    ClientTiming,
    OtherProcess,
    Results,
    RoundRecord,
    read_results,
    write_results,
)
from tests.test_gate import EXPECTATIONS, make_results

HOG = OtherProcess(pid=4242, name="busyloop", device="cpu:1", pct=97.0)


def _unbalanced_rounds(n: int) -> tuple[RoundRecord, ...]:
    """multi-gpu's rounds as the busy core made them: slot 1's clients take 3x longer."""
    def client(c: int) -> ClientTiming:
        dev = f"cpu:{c % 2}"
        t = 0.1 if dev == "cpu:0" else 0.3
        return ClientTiming(c, dev, c % 2, 64, 0.0, t, 0.0, 0.0, t)

    return tuple(RoundRecord(i, False, 1.0, tuple(client(c) for c in range(10)))
                 for i in range(n))


def busy_core_1(quiet: bool = False) -> Results:
    """multi-gpu barely faster than serial (1.03x) with slot 1 unequally loaded; with
    ``quiet`` the monitor measured no other load."""
    results = make_results(means={"serial": 1.0, "threaded": 1.15, "multiprocess": 1.03,
                                  "multi-gpu": 0.97})
    modes = []
    for m in results.modes:
        if m.name == "multi-gpu":
            m = replace(m, rounds=_unbalanced_rounds(len(m.round_times_s)))
            m = replace(m, other_load_pct={"cpu:0": 1.0, "cpu:1": 1.0 if quiet else 48.0},
                        other_processes=() if quiet else (HOG,))
        else:
            m = replace(m, other_load_pct={"cpu:0": 0.5})
        modes.append(m)
    return results.with_modes(tuple(modes))


def test_disturbance_names_the_worst_device_and_the_program() -> None:
    d = busy_core_1().disturbance("multi-gpu")
    assert d is not None and (d.mode, d.device, d.pct) == ("multi-gpu", "cpu:1", 48.0)
    assert "pid 4242 busyloop" in d.describe() and "48% of cpu:1" in d.describe()
    assert busy_core_1().disturbance("serial") is None
    assert busy_core_1(quiet=True).disturbance("multi-gpu") is None


def test_serial_disturbed_makes_every_ratio_no_evidence() -> None:
    results = busy_core_1(quiet=True)
    serial = replace(results.mode("serial"), other_load_pct={"cpu:0": 30.0})
    results = results.with_modes((serial,) + results.modes[1:])
    d = results.disturbance("multi-gpu")
    assert d is not None and d.mode == "serial" and d.device == "cpu:0"


def test_at_the_limit_is_still_quiet() -> None:
    results = busy_core_1(quiet=True)
    mgpu = replace(results.mode("multi-gpu"), other_load_pct={"cpu:1": OTHER_LOAD_LIMIT_PCT})
    assert results.with_modes(results.modes[:-1] + (mgpu,)).disturbance("multi-gpu") is None


def test_the_gate_says_inconclusive_with_the_reason_never_fail(tmp_path: Path) -> None:
    busy = write_results(busy_core_1(), tmp_path / "busy.json")
    report = evaluate_gate(read_results(busy), EXPECTATIONS)
    got = {v.mode: v for v in report.verdicts}
    assert got["multi-gpu"].verdict == INCONCLUSIVE
    assert "48% of cpu:1" in (got["multi-gpu"].message or "")
    assert "pid 4242" in (got["multi-gpu"].message or "")
    assert report.exit_code == 0  # INCONCLUSIVE counts as pass by default
    # the same numbers measured quietly are a regression
    quiet = evaluate_gate(busy_core_1(quiet=True), EXPECTATIONS)
    assert {v.mode: v.verdict for v in quiet.verdicts}["multi-gpu"] == FAIL


def test_a_busy_baseline_is_no_evidence_either(tmp_path: Path) -> None:
    baseline = write_results(busy_core_1(), tmp_path / "baseline.json")
    report = evaluate_gate(busy_core_1(quiet=True), baseline)
    got = {v.mode: v for v in report.verdicts}
    assert got["multi-gpu"].verdict == INCONCLUSIVE
    assert "in the baseline" in (got["multi-gpu"].message or "")
    assert got["serial"].verdict == PASS


def test_findings_name_the_program_and_blame_no_code() -> None:
    found = compute_findings(busy_core_1())
    codes = [f.code for f in found]
    assert codes.count("busy-machine") == 1
    about_mgpu = [f.code for f in found if "multi-gpu" in str(f.facts)]
    assert about_mgpu == ["busy-machine"], about_mgpu
    assert "threads-slower" in codes  # threaded ran quiet: its finding stands
    text = format_findings(found)
    assert "pid 4242 busyloop (97%)" in text and "48% of cpu:1" in text
    assert "进程 4242 busyloop" in format_findings(found, "zh")


def test_a_quiet_run_gets_no_busy_machine_finding_and_its_speed_findings() -> None:
    codes = [f.code for f in compute_findings(busy_core_1(quiet=True))]
    assert "busy-machine" not in codes
    assert "unbalanced-devices" in codes  # the same rounds, now evidence of imbalance


def test_table_and_faq_say_inconclusive_not_slower() -> None:
    busy, quiet = busy_core_1(), busy_core_1(quiet=True)
    assert measures.speed_of(busy, busy.mode("multi-gpu")).verdict == measures.BUSY
    assert measures.speed_of(quiet, quiet.mode("multi-gpu")).verdict != measures.BUSY
    table = format_performance_table(busy)
    assert "inconclusive: other programs' load" in table
    assert "48% other programs" in table  # slot 1's cell says whose the load was
    part = multi_device_part(busy)
    assert part.verdict == "inconclusive" and part.reason == "busy-machine"
    assert part.facts["who"].startswith("pid 4242")
    assert multi_device_part(quiet).verdict == "does-not-hold"


def test_other_load_survives_the_json(tmp_path: Path) -> None:
    results = busy_core_1()
    mgpu = results.mode("multi-gpu")
    rounds = tuple(replace(r, other_load_pct={"cpu:1": 50.0}) for r in mgpu.rounds)
    results = results.with_modes(results.modes[:-1] + (replace(mgpu, rounds=rounds),))
    back = read_results(write_results(results, tmp_path / "r.json")).mode("multi-gpu")
    assert back is not None and back.other_load_pct == {"cpu:0": 1.0, "cpu:1": 48.0}
    assert back.other_processes == (HOG,)
    assert all(r.other_load_pct == {"cpu:1": 50.0} for r in back.rounds)


@pytest.mark.parametrize("name", ["serial", "multi-gpu"])
def test_older_files_without_other_load_read_as_unmeasured(name: str) -> None:
    results = make_results()
    assert results.mode(name).other_load_pct == {} and results.disturbance(name) is None


def test_a_batch_belief_from_a_disturbed_serial_is_inconclusive() -> None:
    quiet = busy_core_1(quiet=True)
    small = replace(quiet, config=replace(quiet.config, batch_size=32))
    serial = replace(quiet.mode("serial"), other_load_pct={"cpu:0": 40.0})
    busy_large = quiet.with_modes((serial,) + quiet.modes[1:])
    part = batch_part(FaqInputs(batch_points=(small, busy_large)))
    assert part.verdict == "inconclusive" and part.reason == "busy-machine"
    assert batch_part(FaqInputs(batch_points=(small, quiet))).reason != "busy-machine"


def _quiet_check(*args: str) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, str(root / "scripts" / "quiet_check.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=root)


def test_the_evidence_check_refuses_a_busy_run_naming_file_mode_and_device(tmp_path) -> None:
    quiet, busy = tmp_path / "quiet.json", tmp_path / "sub" / "busy.json"
    busy.parent.mkdir()
    write_results(busy_core_1(quiet=True), quiet)
    write_results(busy_core_1(), busy)
    ok = _quiet_check(str(quiet))
    assert ok.returncode == 0, ok.stderr
    assert "multi-gpu on cpu:1: other load 1.0%" in ok.stdout
    refused = _quiet_check(str(tmp_path))  # a folder: every results file under it
    assert refused.returncode == 1
    lines = [x for x in refused.stderr.splitlines() if x.startswith("refused:")]
    assert lines == [f"refused: {busy}: multi-gpu on cpu:1 ran beside 48.0% other load "
                     "(limit 10%)"]


def test_the_evidence_check_refuses_a_run_that_recorded_no_other_load(tmp_path) -> None:
    results = busy_core_1(quiet=True)
    unmeasured = replace(results.mode("threaded"), other_load_pct={})
    results = results.with_modes(tuple(unmeasured if m.name == "threaded" else m
                                       for m in results.modes))
    write_results(results, tmp_path / "r.json")
    out = _quiet_check(str(tmp_path / "r.json"))
    assert out.returncode == 1 and "threaded on cpu:0 records no other load" in out.stderr
    (tmp_path / "notes.json").write_text("[]")
    assert _quiet_check(str(tmp_path / "notes.json")).returncode == 2
