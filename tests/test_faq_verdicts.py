"""Verdicts that follow from their evidence, each rule on crafted results files."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gpubench.faq.inputs import FaqInputs, gather
from gpubench.faq.verdicts import (
    ACCURACY_LAST,
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    MIN_SEEDS,
    NOT_APPLICABLE,
    NOT_MEASURED,
    PARTLY,
    accuracy_summary,
    answer_beliefs,
)
from gpubench.findings import compute_findings
from gpubench.report import measures
from gpubench.report.faq_page import format_faq
from gpubench.report.faq_text import faq_text
from gpubench.results import Results
from gpubench.sweep_summary import SummaryPoint, SweepSummary
from tests.test_faq import GIB, _jitter, memory_monitor, mode, results


def _answers(inputs: FaqInputs) -> dict[str, Any]:
    return {a.belief: a for a in answer_beliefs(inputs)}


def test_k_fold_from_one_gpu_is_not_measured() -> None:
    run = results([mode("serial", _jitter(1.0)), mode("multi-gpu", _jitter(0.98), ("cuda:0",))],
                  devices=("cuda:0",))
    answer = _answers(gather([run]))["multi-gpu"]
    assert answer.verdict == NOT_MEASURED and answer.parts[0].reason == "one-device"
    assert answer.parts[0].interval is None  # no ratio is offered as evidence of k-fold
    for lang in ("en", "zh"):
        page = format_faq(gather([run]), lang)
        assert f"**{faq_text('verdict.not-measured', lang)}**" in page


def _memory_run(devices: tuple[str, ...], parent: float, worker: float,
                monitor: dict[str, Any] | None, alone: float | None = None) -> Results:
    """Serial in the parent, multiprocess's two workers and, with ``alone``, multi-gpu's
    worker per device (each alone on its device), as the FAQ plan's memory run."""
    modes = [
        mode("serial", _jitter(1.0, 3), (devices[0],), pids=(100,), proc_mem=int(parent * GIB),
             allocated=int(0.3 * GIB), reserved=int(0.4 * GIB)),
        mode("multiprocess", _jitter(1.0, 3), (devices[0],), workers=2, pids=(201, 202),
             proc_mem=int(worker * GIB), allocated=int(0.2 * GIB), reserved=int(0.3 * GIB)),
    ]
    if alone is not None:
        modes.append(mode("multi-gpu", _jitter(1.0, 3), devices, workers=len(devices),
                          pids=tuple(301 + i for i in range(len(devices))),
                          proc_mem=int(alone * GIB), allocated=int(0.2 * GIB),
                          reserved=int(0.3 * GIB)))
    return results(modes, devices=devices, interleave=False, monitor=monitor)


def test_gpu_memory_from_cpu_slots_is_not_applicable() -> None:
    run = _memory_run(("cpu:0", "cpu:1"), 1.1, 0.75, memory_monitor(1.0 * GIB, 1.4 * GIB), 0.8)
    answer = _answers(gather([run]))["memory"]
    assert answer.verdict == NOT_APPLICABLE
    assert [p.verdict for p in answer.parts] == [NOT_APPLICABLE, NOT_APPLICABLE]
    # what was measured is still shown: the resident memory of the four fresh processes
    assert answer.parts[0].interval is not None
    assert answer.parts[0].facts["median_bytes"] == pytest.approx(0.775 * GIB, rel=1e-6)
    for lang, word, gpu_word in (("en", "resident memory", "device memory"),
                                 ("zh", "常驻内存", "显存")):
        section = format_faq(gather([run]), lang).split('<a id="belief-memory"></a>')[1]
        # each measured part's name (before its figure) calls the memory what it is
        names = [line.split("**")[0] for line in section.splitlines()
                 if line.startswith("- ") and "**" in line][:2]
        assert len(names) == 2 and all(word in n and gpu_word not in n for n in names)


def test_two_processes_give_no_memory_interval_as_evidence() -> None:
    # multiprocess's two workers alone: a t interval over two values is not shown
    run = _memory_run(("cuda:0",), 0.95, 0.9, None)
    for part in _answers(gather([run]))["memory"].parts:
        assert (part.verdict, part.reason, part.interval) == (INCONCLUSIVE, "few-processes", None)
    page = format_faq(gather([run]), "en")
    assert "2 fresh processes measured, fewer than 3" in page


def test_a_compound_belief_gets_a_verdict_per_claim() -> None:
    # 0.9 GiB per fresh process (not about 2 GB); two processes hold twice one's own memory
    run = _memory_run(("cuda:0",), 0.95, 0.9, None, alone=0.92)
    answer = _answers(gather([run]))["memory"]
    assert [p.verdict for p in answer.parts] == [DOES_NOT_HOLD, HOLDS]
    assert answer.verdict == PARTLY
    page = format_faq(gather([run]), "en")
    assert "**partly holds**" in page and "— **does not hold**" in page and "— **holds**" in page


def test_memory_growth_is_the_processes_own_memory_not_the_device_total() -> None:
    # The device total triples (the idle parent's CUDA context sits beside the workers), but
    # each process holds its own 1.9-2.0 GiB: two processes hold about twice one.
    run = _memory_run(("cuda:0", "cuda:1"), 3.0, 1.9, memory_monitor(1.0 * GIB, 3.2 * GIB), 2.0)
    growth = _answers(gather([run]))["memory"].parts[1]
    assert growth.facts["many_bytes"] == 2 * int(1.9 * GIB)
    assert growth.facts["processes"] == 4  # multiprocess's 2 and multi-gpu's 2, not serial
    assert growth.interval is not None
    assert growth.interval.estimate == pytest.approx(2 * 1.9 / 1.95, rel=1e-3)
    assert growth.verdict == HOLDS


def test_a_zero_width_interval_is_no_verdict() -> None:
    # Three processes with the very same memory: no spread, nothing said about noise
    run = _memory_run(("cuda:0",), 0.95, 0.9, None, alone=0.9)
    for part in _answers(gather([run]))["memory"].parts:
        assert (part.verdict, part.reason, part.interval) == (INCONCLUSIVE, "degenerate", None)


def test_process_memory_counts_each_worker_once_and_not_the_parent() -> None:
    # The parent (serial) holds 3 GB, the workers 1.9-1.95 GB each; two batch points repeat
    # the parent at other batch sizes. Only the memory run's fresh workers count.
    memory = _memory_run(("cuda:0",), 3.0, 1.9, memory_monitor(3.0 * GIB, 6.0 * GIB), 1.95)
    points = [results([mode("serial", _jitter(t), pids=(100,), proc_mem=int(3.0 * GIB),
                            allocated=int(0.3 * GIB), reserved=int(0.4 * GIB))],
                      batch=b, interleave=False, command="gpubench sweep --batch-size 32,128")
              for b, t in ((32, 2.6), (128, 1.0))]
    part = _answers(gather([memory, *points]))["memory"].parts[0]
    assert part.facts["processes"] == 3
    assert part.facts["median_bytes"] == int(1.9 * GIB)
    assert part.verdict == HOLDS  # 1.9 GiB = 2.04 GB: about 2 GB
    # the sweep's rows are the parent's: marked, and no per-batch figure is made of them
    page = format_faq(gather([memory, *points]), "en")
    assert "(parent process)" in page and "Per batch size: not measured" in page
    only_parent = _answers(gather(points))["memory"].parts[0]
    assert (only_parent.verdict, only_parent.reason) == (INCONCLUSIVE, "parent-only")


def test_per_batch_memory_comes_from_fresh_workers_only() -> None:
    runs = [_memory_run(("cuda:0",), 3.0, w, None, alone=w + 0.05) for w in (1.0, 1.4)]
    runs = [replace(r, config={**r.config, "batch_size": b})
            for r, b in zip(runs, (32, 128), strict=True)]
    page = format_faq(gather(runs), "en")
    line = next(x for x in page.splitlines() if x.startswith("Per batch size"))
    # medians of each batch size's three fresh processes; the parent's 3.0 GiB is in neither
    assert "batch size 32: 1.0 GiB" in line and "batch size 128: 1.4 GiB" in line
    assert "3.0 GiB" not in line


def _point(batch: int, seed: int, curve: list[float]) -> SummaryPoint:
    return SummaryPoint(batch, accuracy={"batch_size": batch, "rounds": len(curve),
                                         "initial_accuracy": 0.1, "accuracy": curve,
                                         "final": curve[-1], "local_steps": 512 / batch,
                                         "seed": seed})


def _batch_inputs(seeds: int, devices: tuple[str, ...] = ("cuda:0",)) -> FaqInputs:
    util = {devices[0]: 100.0} if devices[0].startswith("cpu") else None
    points = [results([mode("serial", _jitter(t), (devices[0],), util=util)], batch=b,
                      interleave=False, devices=devices, command="gpubench sweep")
              for b, t in ((32, 2.6), (128, 1.0))]
    curves = {32: [[0.5, 0.8, 0.6, 0.9], [0.6, 0.7, 0.8, 0.7], [0.4, 0.9, 0.7, 0.8]],
              128: [[0.3, 0.5, 0.6, 0.5], [0.2, 0.6, 0.5, 0.7], [0.4, 0.4, 0.6, 0.6]]}
    summaries = [SweepSummary("batch_size", "--batch-size", (32, 128),
                              tuple(_point(b, s, curves[b][s]) for b in (32, 128)))
                 for s in range(seeds)]
    return gather(points, summaries)


def test_accuracy_is_claimed_only_over_three_seeds() -> None:
    one = _answers(_batch_inputs(1))["batch"].parts[0].facts
    assert one["accuracy_from"]["seeds"] == 1 and "mean" not in one["accuracy_from"]
    page = format_faq(_batch_inputs(1), "en")
    assert "Accuracy is not compared" in page and "0.90" not in page
    three = _answers(_batch_inputs(3))["batch"].parts[0].facts["accuracy_from"]
    assert three["seeds"] == MIN_SEEDS
    # each seed's mean over its last rounds, then the mean over seeds
    lasts = [sum(c[-ACCURACY_LAST:]) / ACCURACY_LAST
             for c in ([0.6, 0.9], [0.8, 0.7], [0.7, 0.8])]
    assert three["mean"] == pytest.approx(sum(lasts) / 3)
    page = format_faq(_batch_inputs(3), "en")
    assert f"{three['mean']:.2f} ± {three['sd']:.2f}" in page and "over 3 seeds" in page


def test_the_same_seed_twice_is_one_seed() -> None:
    run = {"accuracy": [0.5, 0.6], "rounds": 2, "seed": 7}
    summary = accuracy_summary([run, dict(run), dict(run)])
    assert summary is not None and summary["seeds"] == 1 and "mean" not in summary


def test_the_cpu_slot_why_for_batch_size_names_what_the_slot_measured() -> None:
    inputs = _batch_inputs(1, ("cpu:0", "cpu:1"))
    assert inputs.cpu_slots
    page = format_faq(inputs, "en")
    why = next(line for line in page.splitlines()
               if line.startswith("**Why:**") and "batch of 128" in line)
    assert "slot was busy 100%" in why and "kernel launches" not in why
    gpu = format_faq(_batch_inputs(1), "en")
    assert "kernel launches" in gpu


def test_processes_are_called_time_sliced_only_when_the_interval_says_so() -> None:
    # 5 rounds, 1.8x with an interval across 1.10x: not "no faster than serial"
    wide = results([mode("serial", (1.0, 1.02, 0.98, 1.0, 1.01)),
                    mode("multiprocess", (0.4, 1.05, 0.5, 0.95, 0.55), workers=2)],
                   interleave=False, devices=("cuda:0",))
    speed = measures.speed_of(wide, wide.modes[1])
    assert speed.interval is not None and speed.interval.contains(1.10)
    assert not [f for f in compute_findings(wide) if f.code == "processes-time-sliced"]
    clear = replace(wide, modes=(wide.modes[0], replace(
        wide.modes[1], round_times_s=(1.0, 1.03, 0.99, 1.01, 1.02))))
    assert [f.code for f in compute_findings(clear)].count("processes-time-sliced") == 1


def _waited(m, wait_s: float, compute_s: float = 0.2):
    """``m`` with every client of every round waiting ``wait_s`` of ``compute_s``."""
    from gpubench.results import ClientTiming, RoundRecord

    def client(c: int) -> ClientTiming:
        return ClientTiming(c, "cpu:0", c % 2, 64, 0.0, compute_s, 0.0, 0.0, compute_s,
                            phases={"compute": compute_s}, wait_s=wait_s)

    rounds = tuple(RoundRecord(i, False, t, tuple(client(c) for c in range(4)))
                   for i, t in enumerate(m.round_times_s))
    return replace(m, rounds=rounds)


def test_processes_answer_cites_their_clients_measured_waiting_and_threads_do_not() -> None:
    slots = ("cpu:0", "cpu:1")
    run = results([_waited(mode("serial", _jitter(1.0), ("cpu:0",)), 0.0),
                   _waited(mode("threaded", _jitter(1.0), ("cpu:0",), workers=2), 0.0),
                   _waited(mode("multiprocess", _jitter(0.98), ("cpu:0",), workers=2), 0.1)],
                  devices=slots)
    answers = _answers(gather([run]))
    waited = [f for f in answers["processes"].findings if f.code == "clients-waited"]
    assert [(f.facts["mode"], round(f.facts["wait_pct"])) for f in waited] == [
        ("multiprocess", 50)]
    assert not [f for f in answers["threads"].findings if f.code == "clients-waited"]
    for lang in ("en", "zh"):
        page = format_faq(gather([run]), lang)
        section = page.split('<a id="belief-processes"></a>')[1].split("<a id=")[0]
        assert "50%" in section
