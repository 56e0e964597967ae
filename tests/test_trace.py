"""The run as a Chrome trace (gpubench.report.trace) and each client's waiting for a CPU
(gpubench.machine.schedstat).

Every trace written here goes through tests/trace_check.py. The golden trace comes from a
hand-built Results on a made-up clock; regenerate it after an intended change with
``GPUBENCH_UPDATE_GOLDEN=1 python -m pytest tests/test_trace.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from gpubench.machine import schedstat
from gpubench.report.trace import assign_tracks, build_trace, format_trace
from gpubench.results import (
    ClientTiming,
    ModeResult,
    Results,
    RoundRecord,
    from_dict,
    read_results,
    to_dict,
)
from tests.conftest import cli_in_process, run_config
from tests.test_report_golden import check_golden
from tests.trace_check import check_trace

HAS_SCHEDSTAT = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat").exists()


def client(n: int, worker: int, start: float, phases: dict[str, float],
           wait: float | None = None, device: str = "cpu:0") -> ClientTiming:
    end = start + sum(phases.values())
    return ClientTiming(client=n, device=device, worker=worker, samples=64, load_s=0.0,
                        train_s=0.0, write_s=0.0, start_s=start, end_s=end, phases=phases,
                        wait_s=wait)


PHASES_A = {"setup": 0.001, "data": 0.002, "copy": 0.0, "compute": 0.010, "write": 0.001,
            "aggregate": 0.0005}
PHASES_B = {"setup": 0.002, "data": 0.001, "copy": 0.0, "compute": 0.020, "write": 0.001,
            "aggregate": 0.0005}


def hand_built() -> Results:
    """Serial (a warm-up and a measured round, clients one after another) and threaded (two
    clients at once on worker 0, one on worker 1) on a made-up clock, with a monitor."""
    serial = ModeResult(name="serial", status="ok", devices=("cpu:0",), warmup_times_s=(0.04,),
                        round_times_s=(0.045,), rounds=(
        RoundRecord(0, True, 0.04, (client(0, 0, 0.001, PHASES_A, 0.0),
                                    client(1, 0, 0.017, PHASES_B, 0.001)), 0.002, start_s=1.0),
        RoundRecord(1, False, 0.045, (client(0, 0, 0.001, PHASES_A, 0.0),
                                      client(1, 0, 0.016, PHASES_B, 0.0)), 0.002, start_s=1.1),
    ))
    threaded = ModeResult(name="threaded", status="ok", devices=("cpu:0", "cpu:1"),
                          round_times_s=(0.05,), rounds=(
        RoundRecord(1, False, 0.05, (
            client(0, 0, 0.001, PHASES_A, 0.007),
            client(1, 0, 0.003, PHASES_B, 0.012),
            client(2, 1, 0.002, PHASES_A, None, device="cpu:1"),
        ), 0.003, start_s=1.3),
    ))
    monitor = {
        "t": [0.9, 1.0, 1.1, 1.2, 1.3],
        "spans": [
            {"mode": "serial", "phase": "warmup", "round": 0, "start_s": 0.999, "end_s": 1.04},
            {"mode": "serial", "phase": "round", "round": 0, "start_s": 1.099, "end_s": 1.145},
            {"mode": "threaded", "phase": "replaced", "round": 0, "start_s": 1.2, "end_s": 1.25},
            {"mode": "threaded", "phase": "round", "round": 0, "start_s": 1.299, "end_s": 1.35},
        ],
        "timeline": {
            "t": [0.9, 1.0, 1.1, 1.2, 1.3],
            "util": {"cpu:0": [0.0, 100.0, 98.5, None, 100.0], "cpu:1": [0, 0, 0, 0, 50.0]},
            "other_util": {"cpu:0": [0.0, 0.0, 1.5, None, 0.0], "cpu:1": [0, 0, 0, 0, 0]},
            "mem": {"cpu:0": [2**20, 2**21, 2**21, 2**21, 2**22], "cpu:1": [0, 0, 0, 0, 0]},
        },
    }
    return Results(environment={}, config={"modes": ["serial", "threaded"]},
                   modes=(serial, threaded), monitor=monitor, command="gpubench compare",
                   created_utc="2025-01-01T00:00:00Z", tool_version="0")


def test_golden_trace() -> None:
    results = hand_built()
    trace = build_trace(results)
    check_trace(trace, results)
    check_golden("trace.json", json.dumps(trace, indent=1, sort_keys=True) + "\n")


def names(trace: dict, what: str) -> dict[int, str]:
    return {e["pid"]: e["args"]["name"] for e in trace["traceEvents"]
            if e["ph"] == "M" and e["name"] == what}


def test_processes_tracks_rounds_and_counters() -> None:
    trace = build_trace(hand_built())
    events = trace["traceEvents"]
    assert set(names(trace, "process_name").values()) == {
        "serial · parent", "serial · worker 0 (cpu:0)", "threaded · parent",
        "threaded · worker 0 (cpu:0)", "threaded · worker 1 (cpu:1)",
        "devices (cpu:0)", "devices (cpu:1)"}
    rounds = [e for e in events if e.get("cat") == "round"]
    assert [(e["name"], e["args"].get("warmup")) for e in rounds] == [
        ("warm-up 1", True), ("round 1", False), ("replaced round", None), ("round 1", False)]
    assert rounds[0]["ts"] == 1.0e6 and rounds[0]["dur"] == 0.04e6
    # threaded's clients 0 and 1 overlap on worker 0: two tracks there
    clients = {e["args"]["client"]: e["tid"] for e in events
               if e.get("cat") == "client" and e["args"]["mode"] == "threaded"}
    assert clients[0] != clients[1]
    first = next(e for e in events if e.get("cat") == "client" and e["args"]["client"] == 1
                 and e["args"]["mode"] == "threaded")
    assert first["ts"] == pytest.approx((1.3 + 0.003) * 1e6)
    assert first["args"]["wait_s"] == 0.012
    assert first["args"]["wait_of_compute"] == pytest.approx(0.6)
    util = [e for e in events if e["ph"] == "C" and e["name"] == "util (%)"]
    assert len(util) == 9  # the None sample left out
    waiting = [e["args"]["waiting"] for e in events if e["name"] == "waiting threads"]
    assert max(waiting) > 0 and waiting[-1] == 0


def test_assign_tracks_reuses_a_free_track() -> None:
    cs = [client(0, 0, 0.0, {"compute": 1.0}), client(1, 0, 0.5, {"compute": 1.0}),
          client(2, 0, 1.0, {"compute": 1.0}), client(3, 0, 1.2, {"compute": 0.1})]
    assert assign_tracks(cs) == [0, 1, 0, 2]


def test_older_file_without_round_starts_uses_the_monitor_spans() -> None:
    results = hand_built()
    old = replace(results, modes=tuple(
        replace(m, rounds=tuple(replace(r, start_s=None) for r in m.rounds))
        for m in results.modes))
    trace = build_trace(old)
    check_trace(trace, old)
    starts = [e["ts"] for e in trace["traceEvents"] if e.get("cat") == "round"
              and not e["args"].get("replaced")]
    assert starts == [0.999e6, 1.099e6, 1.299e6]


def test_wait_and_round_start_round_trip_and_old_files_load() -> None:
    results = hand_built()
    back = from_dict(json.loads(json.dumps(to_dict(results))))
    assert back.modes[1].rounds[0].clients[1].wait_s == 0.012
    assert back.modes[0].rounds[1].start_s == 1.1
    data = to_dict(results)
    for m in data["modes"]:
        for r in m["rounds"]:
            del r["start_s"]
            for c in r["clients"]:
                del c["wait_s"]
    old = from_dict(data)
    assert old.modes[0].rounds[0].start_s is None
    assert old.modes[0].rounds[0].clients[0].wait_s is None


def test_trace_command_writes_beside_the_results(tmp_path: Path) -> None:
    results = hand_built()
    path = results.save(tmp_path / "run.json")
    done = cli_in_process("trace", str(path))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "run.trace.json"
    assert done.stdout.strip() == str(out)
    check_trace(json.loads(out.read_text()), read_results(path))
    assert out.read_text() == format_trace(results)


@pytest.mark.slow
def test_a_real_run_traces_and_measures_waiting(tmp_path: Path) -> None:
    """Serial and multiprocess on one slot (two processes on its core): the trace is valid
    and, where the kernel keeps scheduler statistics, every client has its waiting."""
    from gpubench.api import compare, write_trace

    config = run_config(modes=("serial", "multiprocess"), devices="cpu:1", clients=4,
                        sample_interval_s=0.05)
    results = compare(config, counterfactual=False)
    assert all(m.ok for m in results.modes), [m.error for m in results.modes]
    out = write_trace(results, tmp_path / "t.json")
    check_trace(json.loads(out.read_text()), results)
    starts = [r.start_s for m in results.modes for r in m.rounds]
    assert all(s is not None and s > 0 for s in starts)
    if HAS_SCHEDSTAT:
        waits = [c.wait_s for m in results.modes for r in m.rounds for c in r.clients]
        assert all(w is not None and w >= 0 for w in waits)


SPINNER = "import os, time\nos.sched_setaffinity(0, {%d})\nt = time.time()\n" \
          "while time.time() - t < 3: pass\n"


@pytest.mark.skipif(not HAS_SCHEDSTAT, reason="no per-thread scheduler statistics here")
def test_waiting_is_the_run_queue_delay_of_the_training_thread() -> None:
    """A thread sharing its core with a spinning process waits; measured by its schedstat."""
    core = sorted(os.sched_getaffinity(0))[0]
    spinner = subprocess.Popen([sys.executable, "-c", SPINNER % core])
    got: list[float | None] = []

    def train() -> None:
        os.sched_setaffinity(0, {core})  # this thread only
        time.sleep(0.2)  # the spinner is up
        waited = schedstat.start_waiting()
        t = time.perf_counter()
        while time.perf_counter() - t < 0.5:
            pass
        got.append(waited())

    try:
        worker = threading.Thread(target=train)
        worker.start()
        worker.join()
    finally:
        spinner.kill()
        spinner.wait()
    assert got[0] is not None and got[0] >= 0.1  # about half of 0.5 s on a shared core


def test_waiting_counts_the_threads_it_is_told_to(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = tmp_path / "task"
    for tid, ns in ((111, 1_000_000), (222, 5_000_000)):
        (tasks / str(tid)).mkdir(parents=True)
        (tasks / str(tid) / "schedstat").write_text(f"9 {ns} 3\n")
    monkeypatch.setattr(schedstat, "_TASKS", tasks)
    monkeypatch.setattr(schedstat, "_files", {})
    monkeypatch.setattr(schedstat, "_whole_process", True)
    waited = schedstat.start_waiting()
    (tasks / "222" / "schedstat").write_text("9 8000000 4\n")
    (tasks / "333").mkdir()
    (tasks / "333" / "schedstat").write_text("9 500000 1\n")  # started in between
    assert waited() == pytest.approx(0.0035)
    monkeypatch.setattr(schedstat, "_whole_process", False)  # this thread only: not there
    assert schedstat.start_waiting()() is None


def test_a_finding_names_the_waiting_of_workers_sharing_a_device() -> None:
    from gpubench.findings import compute_findings
    from gpubench.report.findings import format_findings

    phases = {"setup": 0.001, "compute": 0.010}
    shared = ModeResult(name="multiprocess", status="ok", devices=("cpu:0",), rounds=(
        RoundRecord(0, False, 0.03, (client(0, 0, 0.0, phases, 0.005),
                                     client(1, 1, 0.0, phases, 0.0046))),))
    quiet = ModeResult(name="multi-gpu", status="ok", devices=("cpu:0", "cpu:1"), rounds=(
        RoundRecord(0, False, 0.02, (client(0, 0, 0.0, phases, 0.0005),
                                     client(1, 1, 0.0, phases, 0.0, device="cpu:1"))),))
    results = Results(environment={}, config={}, modes=(shared, quiet))
    found = [f for f in compute_findings(results) if f.code == "clients-waited"]
    assert [(f.facts["mode"], f.facts["variant"]) for f in found] == [("multiprocess", "shared")]
    assert found[0].facts["wait_pct"] == pytest.approx(48.0)
    assert "each client waited 48% of its compute" in format_findings(found)
    assert "48%" in format_findings(found, "zh")


def test_the_page_links_the_trace_beside_its_results(tmp_path: Path) -> None:
    results = hand_built()
    path = results.save(tmp_path / "run.json")
    assert cli_in_process("trace", str(path)).returncode == 0
    pages = tmp_path / "pages"
    for lang in ("en", "zh"):
        done = cli_in_process("report", str(path), "-o", str(pages / f"run.{lang}.md"),
                              "--lang", lang)
        assert done.returncode == 0, done.stderr
        page = (pages / f"run.{lang}.md").read_text()
        assert "[run.trace.json](../run.trace.json)" in page
        assert "ui.perfetto.dev" in page
    (tmp_path / "run.trace.json").unlink()
    assert cli_in_process("report", str(path), "-o", str(pages / "none.md")).returncode == 0
    assert "trace.json" not in (pages / "none.md").read_text()
