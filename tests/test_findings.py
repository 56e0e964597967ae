"""Each finding rule: it appears with the run's numbers, and not when its condition is absent."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gpubench.findings import Finding, compute_findings, format_findings
from gpubench.results import (
    ClientTiming,
    DeviceStats,
    ModeResult,
    Results,
    RoundRecord,
    WorkerMemory,
    read_results,
)

FIXTURES = Path(__file__).parent / "fixtures"
MiB = 2**20


def rounds(times, clients_per_round=()):
    return tuple(RoundRecord(i, False, t, tuple(clients_per_round)) for i, t in enumerate(times))


def mode(name, times, *, devices=("cuda:0",), workers=1, speedup=None, cold=0.02, **kw):
    return ModeResult(
        name=name, status="ok", devices=devices, workers=workers, cold_start_s=cold,
        round_times_s=tuple(times), speedup_vs_serial=speedup,
        rounds=kw.pop("rounds", rounds(times)), **kw,
    )


def results(*modes, **config):
    cfg = {"batch_size": 32, "rounds": 3, "assign": "round-robin", "interleave": False,
           "tolerance_used": 1e-5, "device_ids": ["cuda:0", "cuda:1"], **config}
    return Results(environment={}, config=cfg, modes=tuple(modes))


SERIAL = mode("serial", [1.00, 1.01, 0.99], speedup=1.0)


def codes(found):
    return [f.code for f in found]


def only(found, code) -> Finding:
    hits = [f for f in found if f.code == code]
    assert len(hits) == 1, codes(found)
    return hits[0]


def test_threads_slower_states_the_speedup():
    r = results(SERIAL, mode("threaded", [2.30, 2.27, 2.33], workers=2, speedup=0.44))
    f = only(compute_findings(r), "threads-slower")
    assert f.level == "warning"
    assert "0.44x" in f.message and "2.3 s" in f.message and "1 s" in f.message
    assert "2 threads" in f.message and "0.44x" in f.message_zh
    assert "GIL" in f.hint


def test_threads_not_slower_gives_no_finding():
    r = results(SERIAL, mode("threaded", [0.98, 1.0, 1.02], workers=2, speedup=1.0))
    assert "threads-slower" not in codes(compute_findings(r))


def test_processes_on_one_device_report_time_slicing_and_memory_per_process():
    serial = mode("serial", [1.0, 1.0, 1.0], speedup=1.0, device_stats=(
        DeviceStats("cuda:0", True, 90.0, 100.0, 900 * MiB),))
    mp = mode("multiprocess", [1.02, 1.01, 1.03], workers=3, speedup=0.98, device_stats=(
        DeviceStats("cuda:0", True, 92.0, 100.0, 2400 * MiB,
                    process_mem_peak_bytes={"11": 800 * MiB, "12": 800 * MiB, "13": 800 * MiB}),),
        worker_memory=tuple(WorkerMemory(i, "cuda:0", 11 + i, 300 * MiB, 500 * MiB)
                            for i in range(3)))
    f = only(compute_findings(results(serial, mp)), "processes-time-sliced")
    assert "0.98x" in f.message and "3 processes" in f.message
    assert "800 MiB" in f.message  # each process's device memory (NVML)
    assert "300 MiB" in f.message  # outside torch's allocator: 800 - 500
    assert "time-slicing" in f.hint


def test_process_memory_from_device_peaks_when_no_per_process_numbers():
    serial = mode("serial", [1.0] * 3, speedup=1.0, device_stats=(
        DeviceStats("cuda:0", True, 90.0, 100.0, 900 * MiB),))
    mp = mode("multiprocess", [1.0] * 3, workers=2, speedup=1.0, device_stats=(
        DeviceStats("cuda:0", True, 90.0, 100.0, 1800 * MiB),))
    f = only(compute_findings(results(serial, mp)), "processes-time-sliced")
    assert "each extra process costs 900 MiB" in f.message


def test_processes_that_scale_give_no_time_slicing_finding():
    r = results(SERIAL, mode("multiprocess", [0.55] * 3, workers=2, speedup=1.82))
    assert "processes-time-sliced" not in codes(compute_findings(r))


def test_workers_on_one_device_beating_serial_is_explained():
    # measured on an H200: cnn, batch 32, serial kept the GPU busy 11% of the time
    serial = mode("serial", [0.366] * 3, speedup=1.0, device_stats=(
        DeviceStats("cuda:0", True, 11.0, 40.0, None),))
    r = results(serial, mode("threaded", [0.312] * 3, workers=2, speedup=1.17),
                mode("multiprocess", [0.25] * 3, workers=2, speedup=1.46))
    found = compute_findings(r)
    f = only(found, "one-device-faster")
    assert "threaded (2 workers) 1.17x, multiprocess (2 workers) 1.46x" in f.message
    assert "busy 11%" in f.message and f.level == "info"
    assert "threads-slower" not in codes(found) and "processes-time-sliced" not in codes(found)
    slow = results(SERIAL, mode("threaded", [2.0] * 3, workers=2, speedup=0.5))
    assert "one-device-faster" not in codes(compute_findings(slow))


@pytest.mark.parametrize("util, sm, expected", [(31.0, None, "31%"), (95.0, 12.0, "12%")])
def test_starved_device_in_serial(util, sm, expected):
    serial = mode("serial", [1.0] * 3, speedup=1.0, device_stats=(
        DeviceStats("cuda:0", True, util, 60.0, 500 * MiB, samples=40, sm_active_mean_pct=sm),))
    f = only(compute_findings(results(serial, batch_size=32)), "device-starved")
    assert expected in f.message and "batch size 32" in f.message
    assert "--batch-size 128" in f.hint and "vectorized" in f.hint


def test_busy_device_in_serial_is_not_starved():
    serial = mode("serial", [1.0] * 3, speedup=1.0, device_stats=(
        DeviceStats("cuda:0", True, 93.0, 100.0, 500 * MiB, sm_active_mean_pct=70.0),))
    assert "device-starved" not in codes(compute_findings(results(serial)))


def test_cold_start_dominating_a_short_run():
    mg = mode("multi-gpu", [0.5, 0.5, 0.5], devices=("cuda:0", "cuda:1"), workers=2,
              speedup=2.0, cold=6.0)
    f = only(compute_findings(results(SERIAL, mg)), "cold-start-dominates")
    # 6 s cold start vs 3 rounds x 0.5 s = 1.5 s: 4x; repaid after (6-0.02)/(1-0.5) = 12 rounds
    assert "6 s vs 3 × 0.5 s = 1.5 s (4.0x)" in f.message
    assert "repaid after 12 rounds" in f.message


def test_cold_start_smaller_than_the_rounds_gives_no_finding():
    mg = mode("multi-gpu", [0.5] * 3, devices=("cuda:0", "cuda:1"), workers=2, speedup=2.0,
              cold=1.2)
    assert "cold-start-dominates" not in codes(compute_findings(results(SERIAL, mg)))


def _clients(loads):
    """One round's client timings: loads[i] = (device, train seconds)."""
    return [ClientTiming(i, dev, 0, 100, 0.0, t, 0.0, 0.0, t) for i, (dev, t) in enumerate(loads)]


def test_unbalanced_devices_in_multi_gpu():
    clients = _clients([("cuda:0", 0.3), ("cuda:1", 0.1), ("cuda:0", 0.3), ("cuda:1", 0.1)])
    mg = mode("multi-gpu", [0.65] * 3, devices=("cuda:0", "cuda:1"), workers=2, speedup=1.5,
              rounds=rounds([0.65] * 3, clients))
    f = only(compute_findings(results(SERIAL, mg)), "unbalanced-devices")
    # per round: cuda:0 0.6 s, cuda:1 0.2 s; mean 0.4 s; max/mean 1.5
    assert "cuda:0 0.6 s (2 clients)" in f.message and "cuda:1 0.2 s (2 clients)" in f.message
    assert "1.50x the mean" in f.message
    assert "--assign balanced" in f.hint


def test_balanced_devices_give_no_finding():
    clients = _clients([("cuda:0", 0.3), ("cuda:1", 0.29), ("cuda:0", 0.3), ("cuda:1", 0.31)])
    mg = mode("multi-gpu", [0.62] * 3, devices=("cuda:0", "cuda:1"), workers=2, speedup=1.6,
              rounds=rounds([0.62] * 3, clients))
    assert "unbalanced-devices" not in codes(compute_findings(results(SERIAL, mg)))


def test_result_differing_from_serial_is_a_problem():
    bad = mode("vectorized", [0.5] * 3, speedup=2.0, same_result=False,
               max_abs_diff_vs_serial=0.032)
    found = compute_findings(results(SERIAL, bad))
    f = only(found, "result-differs")
    assert f.level == "problem" and found[0] is f  # problems come first
    assert "3.2e-02" in f.message and "1e-05" in f.message


def test_same_result_gives_no_difference_finding():
    good = mode("vectorized", [0.5] * 3, speedup=2.0, same_result=True,
                max_abs_diff_vs_serial=1e-7)
    assert "result-differs" not in codes(compute_findings(results(SERIAL, good)))


def test_wide_spread_names_the_mode_and_its_numbers():
    noisy = mode("threaded", [1.0, 1.4, 2.0], workers=2, speedup=0.7)
    f = only(compute_findings(results(SERIAL, noisy)), "wide-spread")
    # IQR of (1.0, 1.4, 2.0) = 1.7 - 1.2 = 0.5; median 1.4; 35.7%
    assert "threaded 35.7% (IQR 0.5 s, median 1.4 s, 3 rounds)" in f.message
    assert "serial" not in f.message.split(":", 1)[1]
    assert "--rounds 10" in f.hint and "--interleave" in f.hint


def test_interleaved_runs_are_not_told_to_interleave():
    noisy = mode("threaded", [1.0, 1.4, 2.0], workers=2, speedup=0.7)
    f = only(compute_findings(results(SERIAL, noisy, interleave=True)), "wide-spread")
    assert "--interleave" not in f.hint


def test_steady_rounds_give_no_spread_finding():
    assert "wide-spread" not in codes(compute_findings(results(SERIAL)))


def test_poor_multi_gpu_scaling_says_where_the_time_went():
    clients = _clients([("cuda:0", 0.2), ("cuda:1", 0.2)])
    mg = mode("multi-gpu", [0.8] * 3, devices=("cuda:0", "cuda:1"), workers=2, speedup=1.2,
              rounds=rounds([0.8] * 3, clients))
    f = only(compute_findings(results(SERIAL, mg)), "scaling-poor")
    assert "1.20x vs serial on 2 devices, 60% of the ideal 2x" in f.message
    assert "busiest device trained for 0.2 s, the other 0.6 s (75%)" in f.message


def test_good_multi_gpu_scaling_is_an_info():
    mg = mode("multi-gpu", [0.53] * 3, devices=("cuda:0", "cuda:1"), workers=2, speedup=1.89)
    found = compute_findings(results(SERIAL, mg))
    assert "scaling-poor" not in codes(found)
    f = only(found, "scaling-good")
    assert f.level == "info" and "1.89x" in f.message and "94%" in f.message


def test_failed_modes_and_missing_serial_do_not_break_the_rules():
    failed = ModeResult(name="multiprocess", status="failed", error="boom")
    alone = mode("threaded", [2.0] * 3, workers=2)
    assert compute_findings(results(failed, alone)) == []
    assert compute_findings(Results(environment={}, config={}, modes=())) == []


def test_cpu_slot_runs_say_so():
    r = Results(environment={}, config={"device_ids": ["cpu:0", "cpu:1"]}, modes=(SERIAL,),
                devices=({"id": "cpu:0", "cores": [0]}, {"id": "cpu:1", "cores": [1]}))
    f = only(compute_findings(r), "cpu-slots")
    assert "2 CPU slot(s) (cores 0 | 1)" in f.message
    assert "cpu-slots" not in codes(compute_findings(results(SERIAL)))


def test_json_fixture_two_slots():
    found = compute_findings(read_results(FIXTURES / "findings_2slots.json"))
    assert codes(found) == ["threads-slower", "processes-time-sliced", "unbalanced-devices",
                            "scaling-poor", "cold-start-dominates", "wide-spread", "cpu-slots"]
    text = format_findings(found)
    assert text.startswith("Findings:\n- warning [threads-slower] threaded: 2 threads on cpu:0")
    assert "0.40x" in text and "hint:" in text
    zh = format_findings(found, lang="zh")
    assert zh.startswith("诊断结论：") and "建议" in zh and "0.40x" in zh


def test_every_finding_is_translated():
    found = compute_findings(read_results(FIXTURES / "findings_2slots.json"))
    for f in found:
        assert f.message_zh and f.message_zh != f.message
        assert bool(f.hint_zh) == bool(f.hint)
    assert format_findings([]) == ""


def test_findings_module_never_imports_torch():
    source = Path(__file__).parents[1] / "gpubench" / "findings.py"
    tree = ast.parse(source.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(n == "torch" or n.startswith("torch.") for n in names)


def test_vectorized_faster_says_by_how_much_and_why():
    r = results(SERIAL, mode("vectorized", [0.70, 0.71, 0.69], speedup=1.43), clients=10)
    f = only(compute_findings(r), "vectorized-faster")
    assert f.level == "info"
    assert "10 clients" in f.message and "0.7 s" in f.message and "1.43x" in f.message
    assert "1.43x" in f.message_zh and "GroupNorm" in f.hint


@pytest.mark.parametrize("device", ["cpu:0", "cuda:0"])
def test_vectorized_slower_is_a_warning_with_the_devices_reason(device):
    r = results(SERIAL, mode("vectorized", [1.8, 1.8, 1.8], devices=(device,), speedup=0.56))
    f = only(compute_findings(r), "vectorized-slower")
    assert f.level == "warning" and "0.56x" in f.message and "1.8 s" in f.message
    assert ("grouped convolutions" in f.hint) == (device == "cpu:0")
    assert ("memory bandwidth" in f.hint) == (device == "cpu:0")
    assert ("fewer clients per device" in f.hint) == (device == "cuda:0")


def test_vectorized_about_serial_gives_no_finding():
    r = results(SERIAL, mode("vectorized", [1.0, 1.0, 1.0], speedup=1.0))
    assert not {"vectorized-faster", "vectorized-slower"} & set(codes(compute_findings(r)))
