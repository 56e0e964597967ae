"""``gpubench faq``: verdicts from constructed results, the plan's size, ``--from`` (without torch: tests/test_without_torch.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gpubench import stats
from gpubench.faq import memory
from gpubench.faq.inputs import FaqInputs, gather
from gpubench.faq.verdicts import (
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    NOT_MEASURED,
    Claim,
    answer_beliefs,
    judge,
    ratio_vs_limits,
)
from gpubench.results import (
    ClientTiming,
    DeviceStats,
    ModeResult,
    Results,
    RoundRecord,
    WorkerMemory,
    write_results,
)
from gpubench.run.faq_plan import FULL, QUICK, estimate_seconds
from gpubench.sweep_summary import load_sweep_summary

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30


def _jitter(base: float, n: int = 8) -> tuple[float, ...]:
    """n round times around ``base``, +-2%, always the same."""
    return tuple(base * (1 + 0.02 * ((i * 7) % 5 - 2) / 2) for i in range(n))


def _rounds(mode: str, devices: Sequence[str], workers: int, clients: int) -> tuple[RoundRecord, ...]:
    timings = tuple(
        ClientTiming(c, devices[c % len(devices)], c % workers, 512, 0.001, 0.09, 0.001,
                     0.1 * c, 0.1 * c + 0.092)
        for c in range(clients)
    )
    return (RoundRecord(0, True, 1.0, timings), RoundRecord(1, False, 1.0, timings))


def mode(name: str, times: Sequence[float], devices: Sequence[str] = ("cuda:0",), *,
         workers: int = 1, util: dict[str, float] | None = None, pids: Sequence[int] = (100,),
         proc_mem: int | None = None, allocated: int | None = None, reserved: int | None = None,
         clients: int = 10, status: str = "ok", error: str | None = None) -> ModeResult:
    util = util or {d: 95.0 for d in devices}
    stats = tuple(
        DeviceStats(d, u >= 50, u, u, None, 10,
                    {str(p): proc_mem for p in pids} if proc_mem and d == devices[0] else {})
        for d, u in util.items()
    )
    memories = tuple(WorkerMemory(i, devices[i % len(devices)], p, allocated, reserved, 5 * GIB)
                     for i, p in enumerate(pids))
    if status != "ok":
        return ModeResult(name, status, error=error)
    return ModeResult(name, status, devices=tuple(devices), workers=workers,
                      round_times_s=tuple(times), same_result=True, device_stats=stats,
                      worker_memory=memories, rounds=_rounds(name, devices, workers, clients))


def results(modes: Sequence[ModeResult], *, batch: int = 128, interleave: bool = True,
            devices: Sequence[str] = ("cuda:0", "cuda:1"), command: str = "gpubench compare",
            monitor: dict[str, Any] | None = None) -> Results:
    config = {"case": "cnn", "clients": 10, "batch_size": batch, "samples_per_client": "512",
              "samples": [512] * 10, "local_epochs": 1, "device_ids": list(devices),
              "interleave": interleave, "rounds": 8, "warmup": 1}
    entries = tuple({"id": d, "kind": d.split(":")[0],
                     "memory_total_bytes": 24 * GIB if d.startswith("cuda") else None}
                    for d in devices)
    return Results({}, config, tuple(modes), devices=entries, monitor=monitor, command=command)


def memory_monitor(one: float, many: float) -> dict[str, Any]:
    """Spans and device-memory samples: serial's rounds then multiprocess's."""
    spans = [{"mode": None, "phase": "between", "round": None, "start_s": 0.0, "end_s": 0.0}]
    t, tags, mem = [], [], []
    for k, (name, value) in enumerate((("serial", one), ("multiprocess", many))):
        for r in range(3):
            start = 10.0 * k + r
            spans.append({"mode": name, "phase": "round", "round": r, "start_s": start,
                          "end_s": start + 1.0})
            for j in range(4):
                t.append(start + 0.2 * (j + 1))
                tags.append(len(spans) - 1)
                mem.append(value * (1 + 0.001 * j))
    return {"backend": "nvml", "interval_s": 0.2, "spans": spans,
            "timeline": {"t": t, "span": tags, "util": {"cuda:0": [90.0] * len(t)},
                         "mem": {"cuda:0": mem}}}


def two_gpu_inputs() -> FaqInputs:
    """The notes' machine, constructed: two GPUs, every belief decided."""
    comparison = results([
        mode("serial", _jitter(1.0), util={"cuda:0": 92.0, "cuda:1": 1.0}),
        mode("threaded", _jitter(2.5), workers=2, util={"cuda:0": 90.0, "cuda:1": 1.0}),
        mode("multiprocess", _jitter(1.0), workers=2, util={"cuda:0": 93.0, "cuda:1": 1.0},
             pids=(201, 202)),
        mode("multi-gpu", _jitter(0.51), ("cuda:0", "cuda:1"), workers=2,
             util={"cuda:0": 91.0, "cuda:1": 90.0}, pids=(301, 302)),
    ], command="gpubench compare --devices cuda --interleave")
    mem = results([
        mode("serial", _jitter(1.0, 3), pids=(100,), proc_mem=int(1.9 * GIB),
             allocated=int(0.3 * GIB), reserved=int(0.4 * GIB)),
        mode("multiprocess", _jitter(1.0, 3), workers=2, pids=(201, 202),
             proc_mem=int(1.8 * GIB), allocated=int(0.2 * GIB), reserved=int(0.3 * GIB)),
        mode("multi-gpu", _jitter(0.5, 3), ("cuda:0", "cuda:1"), workers=2, pids=(301, 302),
             proc_mem=int(1.85 * GIB), allocated=int(0.2 * GIB), reserved=int(0.3 * GIB)),
    ], interleave=False, monitor=memory_monitor(2.0 * GIB, 4.1 * GIB),
        command="gpubench compare --modes serial,multiprocess,multi-gpu")
    points = [
        results([mode("serial", _jitter(t), pids=(100,), proc_mem=int(m * GIB),
                      allocated=int(a * GIB), reserved=int(a * GIB) + 2**26)],
                batch=b, interleave=False, command="gpubench sweep --batch-size 32,128")
        for b, t, m, a in ((32, 2.6, 1.9, 0.3), (128, 1.0, 2.1, 0.5))
    ]
    summary = load_sweep_summary({"parameter": "batch_size", "points": [
        {"value": b, "accuracy": {"batch_size": b, "rounds": 5, "initial_accuracy": 0.1,
                                  "accuracy": acc, "final": acc[-1], "local_steps": 512 / b,
                                  "target": None, "rounds_to_target": None}}
        for b, acc in ((32, [0.4, 0.6, 0.7, 0.8, 0.85]), (128, [0.2, 0.3, 0.4, 0.5, 0.55]))]})
    return gather([comparison, mem, *points], [summary],
                  ["compare.json", "memory.json", "batch_size-32.json", "batch_size-128.json",
                   "summary.json"])


# --- the adapter and the decision --------------------------------------------------------------


def test_the_adapter_says_where_the_whole_interval_lies() -> None:
    interval, sides = ratio_vs_limits([_jitter(1.0)], [_jitter(2.0)], [0.4, 0.5, 0.95])
    assert interval.level == stats.DEFAULT_LEVEL and interval.estimated
    assert interval.low <= 0.5 <= interval.high
    assert sides == ("above", "straddles", "below")
    one, unknown = ratio_vs_limits([[1.0]], [[2.0]], [1.0])
    assert not one.estimated and unknown == ("unknown",)


@pytest.mark.parametrize(
    ("threaded", "verdict", "reason"),
    [
        (_jitter(2.5), HOLDS, None),  # 0.4x: slower, as the notes say
        (_jitter(1.0), DOES_NOT_HOLD, None),  # 1.0x: not slower
        ((0.7, 1.4, 0.8, 1.3, 0.9, 1.2, 1.0, 1.1), INCONCLUSIVE, None),  # the interval crosses 0.95
        ((2.5,), INCONCLUSIVE, "few-values"),  # one round: no interval
    ],
)
def test_a_verdict_per_outcome(threaded: tuple[float, ...], verdict: str, reason: str | None) -> None:
    run = results([mode("serial", _jitter(1.0)), mode("threaded", threaded, workers=2)])
    (answer, *_) = answer_beliefs(gather([run]))
    assert answer.belief == "threads"
    assert answer.verdict == verdict and answer.parts[0].reason == reason


def test_a_claim_between_two_limits() -> None:
    claim = Claim(low=0.75, high=1.25)
    six = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert judge("m", claim, [[1.0, 1.01, 0.99, 1.0, 1.01, 0.99]], [six]).verdict == HOLDS
    assert judge("m", claim, [[0.4, 0.41, 0.42, 0.4, 0.41, 0.42]], [six]).verdict == DOES_NOT_HOLD
    assert judge("m", claim, [[0.5, 1.0, 1.5, 0.5, 1.0, 1.5]], [six]).verdict == INCONCLUSIVE
    # Fewer rounds: the interval gpubench.stats gives them decides, as it does for the gate.
    few = judge("m", claim, [[0.4, 0.41, 0.42]], [[1.0, 1.0]])
    assert few.interval is not None
    assert few.verdict == (DOES_NOT_HOLD if few.interval.estimated else INCONCLUSIVE)
    # One value: no interval, nothing decided.
    one = judge("m", claim, [[0.4]], [[1.0]])
    assert (one.verdict, one.reason) == (INCONCLUSIVE, "few-values")


def test_two_gpus_decide_every_belief() -> None:
    answers = {a.belief: a for a in answer_beliefs(two_gpu_inputs())}
    assert {b: a.verdict for b, a in answers.items()} == {
        "threads": HOLDS, "processes": HOLDS, "multi-gpu": HOLDS, "batch": HOLDS,
        "memory": HOLDS,
    }
    multi = answers["multi-gpu"].parts[0]
    assert multi.claim.low == pytest.approx(0.85 * 2) and multi.facts["k"] == 2
    growth = answers["memory"].parts[1]
    # each process's own memory: two workers' 1.8 GiB over the fresh processes' median
    assert growth.interval is not None and growth.interval.estimate == pytest.approx(
        2 * 1.8 / 1.825, rel=0.01)
    assert answers["batch"].command == "gpubench sweep --batch-size 32,128"


def test_failed_differing_and_single_device_modes_are_inconclusive() -> None:
    differs = mode("multiprocess", _jitter(0.2), workers=2)
    differs = ModeResult(**{**differs.__dict__, "same_result": False})
    run = results([
        mode("serial", _jitter(1.0)), mode("threaded", (), status="failed", error="boom\ntrace"),
        differs, mode("multi-gpu", _jitter(1.0), ("cuda:0",)),
    ], devices=("cuda:0",))
    answers = {a.belief: a.parts[0] for a in answer_beliefs(gather([run]))}
    assert (answers["threads"].verdict, answers["threads"].reason) == (INCONCLUSIVE, "failed")
    assert answers["processes"].reason == "result-differs"
    assert (answers["multi-gpu"].verdict, answers["multi-gpu"].reason) == (
        NOT_MEASURED, "one-device")
    assert answers["batch"].reason == "missing"


def test_an_interleaved_run_does_not_decide_memory_growth() -> None:
    run = results([mode("serial", _jitter(1.0)), mode("multiprocess", _jitter(1.0), workers=2)],
                  interleave=True, monitor=memory_monitor(1.0 * GIB, 2.0 * GIB))
    growth = answer_beliefs(gather([run]))[-1].parts[1]
    assert (growth.verdict, growth.reason) == (INCONCLUSIVE, "interleaved")


def test_memory_split_per_client_and_fit() -> None:
    inputs = two_gpu_inputs()
    procs = memory.measured_processes(inputs)
    serial = next(p for p in procs if p.mode == "serial" and p.batch_size == 128 and p.clients == 10)
    assert serial.source == "nvml" and serial.context_bytes == int(1.9 * GIB) - int(0.4 * GIB)
    # serial (the parent) holds 10 clients and more tensors, but its peak also holds what
    # earlier modes left: not a per-client figure; the fresh workers all hold 5 clients
    assert not serial.fresh and memory.per_client_bytes(procs) is None
    one_gpu = results([
        mode("multiprocess", _jitter(1.0, 3), workers=2, pids=(201, 202), proc_mem=GIB,
             allocated=int(0.2 * GIB), reserved=int(0.3 * GIB)),
        mode("multi-gpu", _jitter(1.0, 3), pids=(301,), proc_mem=GIB,
             allocated=int(0.3 * GIB), reserved=int(0.4 * GIB)),
    ], devices=("cuda:0",), interleave=False)
    # multi-gpu's one worker holds all 10 clients, a multiprocess worker 5: 0.1 GiB for 5
    assert memory.per_client_bytes(memory.processes(one_gpu)) == pytest.approx(
        0.1 * GIB / 5, rel=1e-6)
    fits = memory.fits(inputs, 1.8 * GIB)
    assert [(f.device, f.processes) for f in fits] == [("cuda:0", 12), ("cuda:1", 12)]
    assert fits[0].fill_first == 0.09 and fits[0].num_gpus == 0.2  # 10 clients over 2 GPUs


def test_the_plan_fits_its_time_budget_by_arithmetic() -> None:
    assert estimate_seconds(QUICK) <= 90
    assert estimate_seconds(FULL) <= 300
    assert QUICK.memory_rounds(0.5) == 3 and FULL.memory_rounds(None) == 3
    assert FULL.memory_rounds(0.01) == FULL.memory_rounds_max


# --- the command ------------------------------------------------------------------------------


def _write_inputs(folder: Path) -> list[str]:
    inputs = two_gpu_inputs()
    paths = [str(write_results(r, folder / f"run{i}.json")) for i, r in enumerate(inputs.runs)]
    summary = folder / "summary.json"
    summary.write_text(json.dumps({"parameter": "batch_size", "points": [
        {"value": b, "accuracy": dict(a)} for b, runs in inputs.accuracy.items() for a in runs]}))
    return [*paths, str(summary)]


def test_from_files_writes_both_pages_with_their_plots(tmp_path: Path) -> None:
    # (without torch, too: tests/test_without_torch.py)
    from gpubench.cli import main

    files = _write_inputs(tmp_path)
    assert main(["faq", "--out", str(tmp_path / "out"), "--from", *files]) == 0
    for lang in ("en", "zh"):
        page = (tmp_path / "out" / f"faq.{lang}.md").read_text(encoding="utf-8")
        assert page.count("## ") >= 8
        pngs = list((tmp_path / "out").glob(f"faq.{lang}-*.png"))
        assert len(pngs) >= 3 and all(f"({p.name})" in page for p in pngs)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: [str(d / "missing.json")], "cannot read"),
        (lambda d: [str(d / "bad.json")], "is not a JSON file"),
        (lambda d: [str(d / "summary.json")], "--from needs at least one gpubench results file"),
    ],
)
def test_bad_from_files_are_one_line_and_exit_2(tmp_path: Path, make: Any, words: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from gpubench.cli import main

    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "summary.json").write_text(json.dumps({"parameter": "batch_size", "points": []}))
    assert main(["faq", "--out", str(tmp_path / "out"), "--from", *make(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and err[0].startswith("gpubench faq: error")


def cpu_slot_inputs() -> FaqInputs:
    """Two CPU slots, no batch points: the CPU-slot note, a missing answer, resident memory."""
    slots = ("cpu:0", "cpu:1")
    comparison = results([
        mode("serial", _jitter(1.0), ("cpu:0",), util={"cpu:0": 97.0, "cpu:1": 6.0}),
        mode("threaded", _jitter(1.01), ("cpu:0",), workers=2, util={"cpu:0": 99.0, "cpu:1": 1.0}),
        mode("multiprocess", _jitter(1.04), ("cpu:0",), workers=2, pids=(201, 202),
             util={"cpu:0": 99.0, "cpu:1": 1.0}),
        mode("multi-gpu", _jitter(0.52), slots, workers=2, pids=(301, 302),
             util={"cpu:0": 98.0, "cpu:1": 94.0}),
    ], devices=slots, command="gpubench compare --devices cpu:2 --interleave")
    mem = results([
        mode("serial", _jitter(1.0, 3), ("cpu:0",), pids=(100,), proc_mem=int(1.15 * GIB)),
        mode("multiprocess", _jitter(1.0, 3), ("cpu:0",), workers=2, pids=(201, 202),
             proc_mem=int(0.75 * GIB)),
        mode("multi-gpu", _jitter(0.5, 3), slots, workers=2, pids=(301, 302),
             proc_mem=int(0.78 * GIB)),
    ], devices=slots, interleave=False,
        command="gpubench compare --modes serial,multiprocess,multi-gpu",
        monitor=None)
    return gather([comparison, mem], [], ["compare.json", "memory.json"])


def test_cpu_slots_say_so_and_leave_what_was_not_measured_open() -> None:
    inputs = cpu_slot_inputs()
    assert inputs.cpu_slots
    answers = {a.belief: a for a in answer_beliefs(inputs)}
    assert answers["threads"].verdict == DOES_NOT_HOLD
    assert answers["processes"].verdict == HOLDS
    assert answers["batch"].parts[0].reason == "missing"
    # ~0.75 GiB resident, not 2 GB: shown, but resident memory says nothing about GPU memory
    assert answers["memory"].parts[0].verdict == NOT_APPLICABLE
    assert answers["memory"].parts[0].interval is not None
    assert answers["memory"].parts[1].verdict == NOT_APPLICABLE
    assert memory.fits(inputs, 1e9) == []  # CPU slots have no device memory to divide


def test_the_committed_h200_results_give_gpu_pages(tmp_path: Path) -> None:
    from gpubench.cli import main

    h200 = ROOT / "reports" / "gpu-h200"
    files = [str(h200 / "compare-all.json"), str(h200 / "compare-one-gpu.json"),
             *sorted(str(p) for p in (h200 / "sweep").glob("*.json"))]
    assert main(["faq", "--out", str(tmp_path), "--lang", "both", "--from", *files]) == 0
    en = (tmp_path / "faq.en.md").read_text(encoding="utf-8")
    assert "GPU 0" in en and "CPU slot" not in en
    assert "NVIDIA H200" in en.splitlines()[0]  # the page names its GPU, from the files
    assert en.count("**Verdict:**") == 5
