"""``--profile-ops``: the profiled round kept out of the statistics, and torch.profiler's
operators merged into the run's trace under each worker, on the trace's clock.

Every trace written here goes through tests/trace_check.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpubench.report.trace import build_trace, nested
from gpubench.results import (
    ClientTiming,
    ModeResult,
    OpTrace,
    ProfiledRound,
    Results,
    RoundRecord,
    from_dict,
    read_results,
    to_dict,
)
from tests.conftest import cli_in_process
from tests.trace_check import check_trace

# The round started at this wall-clock time (ns since the epoch), drawn at START_S on the
# monitor's clock; the profiler's times count from BASE_NS, a while before.
WALL_NS = 1_700_000_000_123_456_789
BASE_NS = 1_699_999_000_000_000_000
START_S = 2.5


def profiler_ts(after_start_s: float) -> float:
    """torch's ``ts`` (µs after BASE_NS) of a moment ``after_start_s`` into the round."""
    return (WALL_NS - BASE_NS) / 1e3 + after_start_s * 1e6


def fake_profile(path: Path) -> Path:
    """A Chrome trace as torch.profiler exports it: metadata, operators (one overlapping its
    parent's end), a flow pair, an instant, the profiler's own span, and a GPU kernel."""
    host, thread = 4242, 4243
    events: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": host, "tid": 0, "args": {"name": "python"}},
        {"ph": "X", "cat": "cpu_op", "name": "aten::linear", "pid": host, "tid": thread,
         "ts": profiler_ts(0.010), "dur": 2000.0, "args": {"External id": 1}},
        {"ph": "X", "cat": "cpu_op", "name": "aten::addmm", "pid": host, "tid": thread,
         "ts": profiler_ts(0.011), "dur": 1500.0, "args": {}},  # ends 0.5 ms after its parent
        {"ph": "X", "cat": "cpu_op", "name": "aten::relu", "pid": host, "tid": thread,
         "ts": profiler_ts(0.020), "dur": 300.0, "args": {}},
        {"ph": "s", "cat": "fwdbwd", "name": "fwdbwd", "id": 3, "pid": host, "tid": thread,
         "ts": profiler_ts(0.010)},
        {"ph": "f", "cat": "fwdbwd", "name": "fwdbwd", "id": 3, "pid": host, "tid": thread,
         "ts": profiler_ts(0.020), "bp": "e"},
        {"ph": "i", "name": "Iteration Start: PyTorch Profiler", "pid": "Traces", "tid": 0,
         "ts": profiler_ts(0.0), "s": "g"},
        {"ph": "X", "cat": "Trace", "name": "PyTorch Profiler (0)", "pid": "Spans", "tid": 1,
         "ts": profiler_ts(0.0), "dur": 50000.0},
        {"ph": "X", "cat": "kernel", "name": "gemm", "pid": 0, "tid": 7,
         "ts": profiler_ts(0.012), "dur": 400.0},
    ]
    path.write_text(json.dumps({"schemaVersion": 1, "baseTimeNanoseconds": BASE_NS,
                                "traceEvents": events}))
    return path


def profiled_results(traces: tuple[OpTrace, ...], median_s: float = 0.04) -> Results:
    phases = {"setup": 0.005, "data": 0.0, "copy": 0.0, "compute": 0.03, "write": 0.002}
    c = ClientTiming(client=0, device="cpu:1", worker=1, samples=32, load_s=0.0, train_s=0.0,
                     write_s=0.0, start_s=0.001, end_s=0.038, phases=phases)
    measured = RoundRecord(0, False, 0.04, (c,), 0.001, start_s=1.0)
    profiled = ProfiledRound(RoundRecord(0, False, 0.05, (c,), start_s=START_S), traces,
                             WALL_NS, median_s)
    mode = ModeResult(name="multi-gpu", status="ok", devices=("cpu:1",),
                      round_times_s=(0.04,), rounds=(measured,), profiled=profiled)
    return Results(environment={}, config={"modes": ["multi-gpu"], "profile_ops": True},
                   modes=(mode,))


def ops_of(trace: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in trace["traceEvents"]
            if e["ph"] == "X" and e["cat"] in ("cpu_op", "kernel")}


def test_profiler_times_move_onto_the_traces_clock(tmp_path: Path) -> None:
    path = fake_profile(tmp_path / "worker1-0.json")
    results = profiled_results((OpTrace(1, "cpu:1", str(path)),))
    trace = build_trace(results)
    check_trace(trace, results)
    ops = ops_of(trace)
    # 10 ms into the round that starts at 2.5 s: 2.51 s on the trace's clock
    assert ops["aten::linear"]["ts"] == pytest.approx(2.51e6, abs=0.01)
    assert ops["aten::relu"]["ts"] == pytest.approx(2.52e6, abs=0.01)
    assert ops["gemm"]["ts"] == pytest.approx(2.512e6, abs=0.01)
    # the child that outlived its parent is cut at the parent's end
    assert ops["aten::addmm"]["dur"] == pytest.approx(1000.0, abs=0.01)
    # flows, instants and the profiler's own span are not drawn
    kept = {e["name"] for e in trace["traceEvents"] if e["ph"] != "M"}
    assert not kept & {"fwdbwd", "Iteration Start: PyTorch Profiler", "PyTorch Profiler (0)"}
    assert {e["ph"] for e in trace["traceEvents"]} <= {"M", "X", "C"}


def test_profiler_slices_sit_under_the_worker_and_the_round_is_marked(tmp_path: Path) -> None:
    path = fake_profile(tmp_path / "worker1-0.json")
    trace = build_trace(profiled_results((OpTrace(1, "cpu:1", str(path)),)))
    events = trace["traceEvents"]
    processes = {e["pid"]: e["args"]["name"] for e in events
                 if e["ph"] == "M" and e["name"] == "process_name"}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e["ph"] == "M" and e["name"] == "thread_name"}
    ops = ops_of(trace)
    assert processes[ops["aten::linear"]["pid"]] == "multi-gpu · worker 1 (cpu:1)"
    assert threads[(ops["aten::linear"]["pid"], ops["aten::linear"]["tid"])] == "ops · thread 4243"
    assert threads[(ops["gemm"]["pid"], ops["gemm"]["tid"])] == "ops · GPU 0 stream 7"
    rounds = [e for e in events if e.get("cat") == "round"]
    assert [e["name"] for e in rounds] == ["round 1", "profiled round"]
    assert rounds[1]["ts"] == START_S * 1e6 and rounds[1]["args"]["profiled"] is True
    meta = trace["otherData"]["profiled_rounds"]["multi-gpu"]
    assert meta["profiler_cost"] == pytest.approx(0.25)  # 0.05 s against a median of 0.04 s
    assert meta["unreadable"] == []


def test_a_profile_that_is_gone_is_named_and_the_trace_stays_valid(tmp_path: Path) -> None:
    gone = str(tmp_path / "gone.json")
    results = profiled_results((OpTrace(1, "cpu:1", gone),))
    trace = build_trace(results)
    check_trace(trace, results)
    assert not ops_of(trace)
    assert trace["otherData"]["profiled_rounds"]["multi-gpu"]["unreadable"] == [gone]


def test_nested_cuts_partial_overlaps_and_drops_what_is_left_empty() -> None:
    def s(ts: float, dur: float) -> dict[str, Any]:
        return {"ts": ts, "dur": dur}

    out = nested([s(0, 10), s(5, 10), s(10, 0.0), s(12, 3), s(13, 5)])
    assert [(e["ts"], e["dur"]) for e in out] == [(0, 10), (5, 5), (10, 0.0), (12, 3),
                                                  (13, 2)]


def test_the_profiled_round_survives_json_and_older_files_have_none(tmp_path: Path) -> None:
    results = profiled_results((OpTrace(1, "cpu:1", "/x/worker1-0.json"),))
    back = from_dict(json.loads(json.dumps(to_dict(results))))
    assert back.modes[0].profiled == results.modes[0].profiled
    data = to_dict(results)
    del data["modes"][0]["profiled"]
    assert from_dict(data).modes[0].profiled is None


def test_the_profiler_files_move_beside_the_results_and_the_temporary_folder_goes(
        tmp_path: Path) -> None:
    from gpubench.run.op_files import TEMP_PREFIX, keep_op_traces

    root = tmp_path / f"{TEMP_PREFIX}x"
    (root / "multi-gpu").mkdir(parents=True)
    there = fake_profile(root / "multi-gpu" / "worker1-0.json")
    neighbour = tmp_path / "empty-folder-of-the-user"
    neighbour.mkdir()
    gone = str(tmp_path / "gone" / "worker0-0.json")
    results = profiled_results((OpTrace(1, "cpu:1", str(there)), OpTrace(0, "cpu:0", gone)))
    out = tmp_path / "runs" / "r.json"
    kept = keep_op_traces(results, out)
    moved = kept.modes[0].profiled.traces  # type: ignore[union-attr]
    assert Path(moved[0].path) == (tmp_path / "runs" / "r.ops" / "multi-gpu" /
                                   "worker1-0.json").resolve()
    assert json.loads(Path(moved[0].path).read_text())["baseTimeNanoseconds"] == BASE_NS
    assert moved[1].path == gone  # a file already gone stays named: the trace lists it
    assert not root.exists() and neighbour.is_dir()  # only the run's own folder is removed
    check_trace(build_trace(kept), kept)


@pytest.mark.slow
def test_a_profiled_run_merges_each_workers_operators(tmp_path: Path) -> None:
    out, trace_file = tmp_path / "r.json", tmp_path / "t.json"
    done = cli_in_process("compare", "--modes", "serial,multi-gpu", "--devices", "cpu:2",
                          "--clients", "2", "--samples-per-client", "32", "--batch-size", "16",
                          "--rounds", "1", "--warmup", "0", "--profile-ops", "-q",
                          "--out", str(out), "--trace", str(trace_file))
    assert done.returncode == 0, done.stderr
    results = read_results(out)
    trace = json.loads(trace_file.read_text())
    check_trace(trace, results)
    for m in results.modes:
        assert m.profiled is not None, m.name
        # the profiled round is in no statistic: one measured round, before it
        assert len(m.rounds) == len(m.round_times_s) == 1
        assert m.profiled.round.start_s > m.rounds[0].start_s + m.rounds[0].time_s
        assert m.profiled.median_round_s == m.round_times_s[0]
    gpu = results.mode("multi-gpu")
    assert gpu is not None and gpu.profiled is not None
    assert {(t.worker, t.device) for t in gpu.profiled.traces} == {(0, "cpu:0"), (1, "cpu:1")}
    assert all(Path(t.path).parent == tmp_path / "r.ops" / "multi-gpu" and Path(t.path).is_file()
               for t in gpu.profiled.traces)  # kept beside the results, not in a temp folder
    events = trace["traceEvents"]
    processes = {e["pid"]: e["args"]["name"] for e in events
                 if e["ph"] == "M" and e["name"] == "process_name"}
    for worker in ("multi-gpu · worker 0 (cpu:0)", "multi-gpu · worker 1 (cpu:1)"):
        pid = next(p for p, name in processes.items() if name == worker)
        ops = [e for e in events if e["pid"] == pid and e.get("cat") == "cpu_op"]
        mine = [e for e in events if e["pid"] == pid and e.get("cat") in ("client", "phase")
                and e["args"]["round"] == "profiled round"]
        clients = [e for e in mine if e["cat"] == "client"]
        compute = [e for e in mine if e["name"] == "compute"]
        assert ops and len(clients) == len(compute) == 1

        def inside(op: dict[str, Any], slices: list[dict[str, Any]]) -> bool:
            return any(s["ts"] <= op["ts"] and op["ts"] + op["dur"] <= s["ts"] + s["dur"]
                       for s in slices)

        # Every operator of the round ran within the worker's client; the backward pass only
        # in its compute phase (setup, data and write run operators of their own).
        assert sum(inside(o, clients) for o in ops) >= 0.9 * len(ops), worker
        backward = [o for o in ops if "backward" in o["name"].lower()]
        assert backward and sum(inside(o, compute) for o in backward) >= 0.9 * len(backward)
        assert sum(inside(o, compute) for o in ops) >= 0.5 * len(ops), worker
