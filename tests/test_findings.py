"""Each finding rule, from constructed results: its facts, its words in en and zh, and its
absence when its condition is absent; the catalogue holds every phrase a rule can need."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpubench.findings import CODES, Finding, compute_findings
from gpubench.findings.scaling import repaid
from gpubench.report.findings import finding_text, format_findings, message_key
from gpubench.report.i18n import catalogue
from gpubench.results import (
    ClientTiming,
    DeviceStats,
    ModeResult,
    Results,
    RoundRecord,
    WorkerMemory,
    read_results,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
RULE_MODULES = sorted((ROOT / "gpubench" / "findings").glob("*.py"))
MiB = 2**20
CJK = re.compile(r"[\u4e00-\u9fff]")


@dataclass(frozen=True)
class TruthMode(ModeResult):
    """A ModeResult with the per-client equivalence fields (they may not exist here yet)."""

    worst_client: int | None = None
    worst_round: int | None = None
    worst_client_diff: float | None = None
    reproducible: bool = True
    not_reproducible_reason: str | None = None


def rounds(times, clients_per_round=()):
    return tuple(RoundRecord(i, False, t, tuple(clients_per_round)) for i, t in enumerate(times))


def mode(name, times, *, devices=("cuda:0",), workers=1, speedup=None, cold=0.02, cls=ModeResult,
         **kw):
    return cls(
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


def words(f: Finding) -> tuple[str, str, str, str]:
    """(message, hint, message_zh, hint_zh); the Chinese message is Chinese, and the code and
    variant are ones the catalogue test covers."""
    variant = f.facts.get("variant")
    assert f.code in CODES and (variant in CODES[f.code] if variant else not CODES[f.code])
    en, hint = finding_text(f, "en")
    zh, hint_zh = finding_text(f, "zh")
    assert CJK.search(zh) and not CJK.search(en), (en, zh)
    assert bool(hint) == bool(hint_zh)
    return en, hint, zh, hint_zh


def test_threads_slower_states_the_speedup():
    # The speedup is computed from the rounds (as the report and the gate do), not taken
    # from a saved figure that disagrees with them.
    r = results(SERIAL, mode("threaded", [2.30, 2.27, 2.33], workers=2, speedup=0.5))
    f = only(compute_findings(r), "threads-slower")
    assert f.level == "warning" and f.facts["workers"] == 2 and f.facts["device"] == "cuda:0"
    assert f.facts["versus"] == {"mode_s": 2.30, "serial_s": 1.00,
                                 "speedup": pytest.approx(1 / 2.30)}
    en, hint, zh, _ = words(f)
    assert "threaded: 2 threads on cuda:0 are slower than serial" in en
    assert "2.3 s vs serial's 1 s per round = 0.43x" in en
    assert "多线程" in zh and "加速比 0.43x" in zh and "GIL" in hint


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
    assert f.facts["variant"] == "gpu" and f.facts["memory"]["variant"] == "per-process"
    en, hint, zh, hint_zh = words(f)
    assert "0.98x" in en and "3 processes" in en
    assert "each of its 3 processes holds 800 MiB" in en  # each process's device memory (NVML)
    assert "300 MiB of it outside torch's allocator" in en  # 800 - 500
    assert "time-slicing" in hint and "显存" in zh and "时间片" in hint_zh


def test_process_memory_from_device_peaks_when_no_per_process_numbers():
    serial = mode("serial", [1.0] * 3, speedup=1.0, device_stats=(
        DeviceStats("cuda:0", True, 90.0, 100.0, 900 * MiB),))
    mp = mode("multiprocess", [1.0] * 3, workers=2, speedup=1.0, device_stats=(
        DeviceStats("cuda:0", True, 90.0, 100.0, 1800 * MiB),))
    f = only(compute_findings(results(serial, mp)), "processes-time-sliced")
    assert f.facts["memory"] == {"variant": "extra", "extra_bytes": 900 * MiB,
                                 "peak_bytes": 1800 * MiB, "serial_peak_bytes": 900 * MiB}
    assert "each extra process costs 900 MiB" in words(f)[0]


def test_processes_on_a_cpu_slot_get_the_cpu_hint_and_resident_memory():
    mp = mode("multiprocess", [1.0] * 3, devices=("cpu:0",), workers=2, speedup=1.0,
              worker_memory=(WorkerMemory(0, "cpu:0", 5, None, None, 700 * MiB),))
    f = only(compute_findings(results(SERIAL, mp)), "processes-time-sliced")
    en, hint, zh, hint_zh = words(f)
    assert "700 MiB resident" in en and "CPU slot" in hint and "CPU 槽" in hint_zh


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
    en, _, zh, _ = words(f)
    assert "threaded (2 workers) 1.17x, multiprocess (2 workers) 1.46x" in en
    assert "busy 11%" in en and f.level == "info" and "11%" in zh
    assert "threads-slower" not in codes(found) and "processes-time-sliced" not in codes(found)
    slow = results(SERIAL, mode("threaded", [2.0] * 3, workers=2, speedup=0.5))
    assert "one-device-faster" not in codes(compute_findings(slow))


def test_one_device_faster_without_monitoring_leaves_the_clause_out():
    r = results(SERIAL, mode("multiprocess", [0.5] * 3, workers=2, speedup=2.0))
    f = only(compute_findings(r), "one-device-faster")
    assert f.facts["serial_busy"] is None
    en, _, _, _ = words(f)
    assert "vs serial: serial leaves" in en and "?" not in en


@pytest.mark.parametrize("util, sm, variant, expected", [(31.0, None, "util", "31%"),
                                                         (95.0, 12.0, "sm", "12%")])
def test_starved_device_in_serial(util, sm, variant, expected):
    serial = mode("serial", [1.0] * 3, speedup=1.0, device_stats=(
        DeviceStats("cuda:0", True, util, 60.0, 500 * MiB, samples=40, sm_active_mean_pct=sm),))
    f = only(compute_findings(results(serial, batch_size=32)), "device-starved")
    assert f.facts["variant"] == variant and f.facts["bigger"] == {"variant": "known", "batch": 128}
    en, hint, _, hint_zh = words(f)
    assert expected in en and "batch size 32" in en
    assert "--batch-size 128" in hint and "vectorized" in hint and "--batch-size 128" in hint_zh


def test_starved_device_without_a_batch_size_says_a_bigger_one():
    serial = mode("serial", [1.0] * 3, speedup=1.0, device_stats=(
        DeviceStats("cuda:0", True, 20.0, 60.0, None, samples=40),))
    f = only(compute_findings(results(serial, batch_size=None)), "device-starved")
    assert "a bigger --batch-size" in words(f)[1]


def test_busy_device_in_serial_is_not_starved():
    serial = mode("serial", [1.0] * 3, speedup=1.0, device_stats=(
        DeviceStats("cuda:0", True, 93.0, 100.0, 500 * MiB, sm_active_mean_pct=70.0),))
    assert "device-starved" not in codes(compute_findings(results(serial)))


def test_cold_start_dominating_a_short_run():
    mg = mode("multi-gpu", [0.5, 0.5, 0.5], devices=("cuda:0", "cuda:1"), workers=2,
              speedup=2.0, cold=6.0)
    f = only(compute_findings(results(SERIAL, mg)), "cold-start-dominates")
    en, _, zh, _ = words(f)
    # 6 s cold start vs 3 rounds x 0.5 s = 1.5 s: 4x; repaid after (6-0.02)/(1-0.5) = 12 rounds
    assert "6 s vs 3 × 0.5 s = 1.5 s (4.0x)" in en
    assert "repaid after 12 rounds" in en and "12 轮后收回" in zh


@pytest.mark.parametrize("mode_cold, mode_round, variant, phrase", [
    (6.0, 1.5, "never", "never repaid: its rounds are no faster than serial's"),
    (0.6, 0.1, "at-once", "no longer than serial's start-up"),
])
def test_cold_start_that_is_never_or_at_once_repaid_says_so(mode_cold, mode_round, variant,
                                                            phrase):
    serial = mode("serial", [1.0] * 3, speedup=1.0, cold=0.8)
    other = mode("multiprocess", [mode_round] * 3, workers=2, cold=mode_cold)
    f = only(compute_findings(results(serial, other)), "cold-start-dominates")
    item = next(m for m in f.facts["modes"] if m["mode"] == "multiprocess")
    assert item["repaid"] == {"variant": variant}
    assert phrase in words(f)[0]


@given(
    serial_cold=st.floats(0.0, 30.0), mode_cold=st.floats(0.0, 30.0),
    serial_round=st.floats(0.001, 10.0), mode_round=st.floats(0.001, 10.0),
)
def test_repaid_is_never_a_negative_or_zero_count(serial_cold, mode_cold, serial_round,
                                                  mode_round):
    serial = mode("serial", [serial_round], cold=serial_cold)
    other = mode("multi-gpu", [mode_round], cold=mode_cold)
    facts = repaid(results(serial, other), other)
    assert facts is not None
    if facts["variant"] == "after":
        assert facts["rounds"] >= 1
    f = Finding("warning", "cold-start-dominates", {"modes": [{
        "mode": "multi-gpu", "cold_s": mode_cold, "rounds": 1, "round_s": mode_round,
        "rounds_s": mode_round, "ratio": 1.0, "repaid": facts}]})
    counts = re.findall(r"repaid after (\S+) rounds", finding_text(f, "en")[0])
    counts += re.findall(r"，(\S+) 轮后收回", finding_text(f, "zh")[0])
    assert all(int(n) >= 1 for n in counts)
    assert len(counts) == (2 if facts["variant"] == "after" else 0)


def test_cold_start_smaller_than_the_rounds_gives_no_finding():
    mg = mode("multi-gpu", [0.5] * 3, devices=("cuda:0", "cuda:1"), workers=2, speedup=2.0,
              cold=1.2)
    assert "cold-start-dominates" not in codes(compute_findings(results(SERIAL, mg)))


def _clients(loads):
    """One round's client timings: loads[i] = (device, train seconds)."""
    return [ClientTiming(i, dev, 0, 100, 0.0, t, 0.0, 0.0, t) for i, (dev, t) in enumerate(loads)]


@pytest.mark.parametrize("assign, variant, hint_part", [
    ("round-robin", "static", "--assign balanced"),
    ("balanced", "balanced", "multiple of the devices"),
    ("dynamic", "dynamic", "more, smaller clients"),
])
def test_unbalanced_devices_in_multi_gpu(assign, variant, hint_part):
    clients = _clients([("cuda:0", 0.3), ("cuda:1", 0.1), ("cuda:0", 0.3), ("cuda:1", 0.1)])
    mg = mode("multi-gpu", [0.65] * 3, devices=("cuda:0", "cuda:1"), workers=2, speedup=1.5,
              rounds=rounds([0.65] * 3, clients))
    f = only(compute_findings(results(SERIAL, mg, assign=assign)), "unbalanced-devices")
    assert f.facts["variant"] == variant
    en, hint, zh, _ = words(f)
    # per round: cuda:0 0.6 s, cuda:1 0.2 s; mean 0.4 s; max/mean 1.5
    assert "cuda:0 0.6 s (2 clients), cuda:1 0.2 s (2 clients)" in en
    assert "1.50x the mean" in en and "cuda:0 0.6 s（2 个客户端）" in zh
    assert hint_part in hint


def test_balanced_devices_give_no_finding():
    clients = _clients([("cuda:0", 0.3), ("cuda:1", 0.29), ("cuda:0", 0.3), ("cuda:1", 0.31)])
    mg = mode("multi-gpu", [0.62] * 3, devices=("cuda:0", "cuda:1"), workers=2, speedup=1.6,
              rounds=rounds([0.62] * 3, clients))
    assert "unbalanced-devices" not in codes(compute_findings(results(SERIAL, mg)))


def test_result_differing_for_one_client_names_client_round_and_tolerance():
    bad = mode("multiprocess", [0.5] * 3, speedup=2.0, same_result=False, cls=TruthMode,
               max_abs_diff_vs_serial=0.032, worst_client=3, worst_round=2,
               worst_client_diff=0.41, extra={"tolerance": 1e-3})
    found = compute_findings(results(SERIAL, bad))
    f = only(found, "result-differs")
    assert f.level == "error" and found[0] is f  # errors come first
    assert f.facts == {"variant": "client", "mode": "multiprocess", "client": 3, "round": 2,
                       "diff": 0.41, "tolerance": 1e-3, "max_abs_diff": 0.032}
    en, hint, zh, _ = words(f)
    assert "client 3 in round 2 differs by 0.41 of its update (tolerance 1e-03)" in en
    assert "the run fails" in en and "exactly once" in hint
    assert "第 2 轮的客户端 3" in zh and "0.41" in zh


def test_result_differing_without_per_client_fields_names_the_aggregate():
    bad = mode("vectorized", [0.5] * 3, speedup=2.0, same_result=False,
               max_abs_diff_vs_serial=0.032)
    f = only(compute_findings(results(SERIAL, bad)), "result-differs")
    assert f.facts["variant"] == "aggregate" and f.facts["tolerance"] == 1e-5
    en, _, _, _ = words(f)
    assert "3.2e-02" in en and "1e-05" in en


def test_same_result_gives_no_difference_finding():
    good = mode("vectorized", [0.5] * 3, speedup=2.0, same_result=True,
                max_abs_diff_vs_serial=1e-7)
    assert "result-differs" not in codes(compute_findings(results(SERIAL, good)))


@pytest.mark.parametrize("name, fix", [("threaded", "give each thread its own generator"),
                                       ("ray", "seeded per client")])
def test_not_reproducible_is_a_warning_with_the_reason_and_the_fix(name, fix):
    reason = "the case draws from torch's global RNG (Dropout) and the threads share it"
    odd = mode(name, [0.9] * 3, speedup=1.1, cls=TruthMode, reproducible=False,
               not_reproducible_reason=reason, same_result=None)
    found = compute_findings(results(SERIAL, odd))
    f = only(found, "not-reproducible")
    assert f.level == "warning" and "result-differs" not in codes(found)
    en, hint, zh, _ = words(f)
    assert f"{name} is not reproducible: {reason}" in en and "neither as equal" in en
    assert fix in hint and "不可复现" in zh and reason in zh


def test_not_reproducible_without_a_reason_and_never_also_differing():
    odd = mode("threaded", [0.9] * 3, cls=TruthMode, reproducible=False, same_result=False)
    found = compute_findings(results(SERIAL, odd))
    assert codes(found) == ["not-reproducible"]
    assert "threaded is not reproducible: its result" in words(found[0])[0]


def test_wide_spread_names_the_mode_and_its_numbers():
    noisy = mode("threaded", [1.0, 1.4, 2.0], workers=2, speedup=0.7)
    f = only(compute_findings(results(SERIAL, noisy)), "wide-spread")
    en, hint, _, hint_zh = words(f)
    # IQR of (1.0, 1.4, 2.0) = 1.7 - 1.2 = 0.5; median 1.4; 35.7%
    assert "threaded 35.7% (IQR 0.5 s, median 1.4 s, 3 rounds)" in en
    assert "serial" not in en.split(":", 1)[1]
    assert "--rounds 10" in hint and "--sequential" in hint and "--sequential" in hint_zh


def test_interleaved_runs_are_not_told_to_interleave():
    noisy = mode("threaded", [1.0, 1.4, 2.0], workers=2, speedup=0.7)
    f = only(compute_findings(results(SERIAL, noisy, interleave=True)), "wide-spread")
    assert f.facts["interleave"] is None
    assert "--sequential" not in words(f)[1] and "--interleave" not in words(f)[1]


def test_steady_rounds_give_no_spread_finding():
    assert "wide-spread" not in codes(compute_findings(results(SERIAL)))


def test_poor_multi_gpu_scaling_says_where_the_time_went():
    clients = _clients([("cuda:0", 0.2), ("cuda:1", 0.2)])
    mg = mode("multi-gpu", [0.8] * 3, devices=("cuda:0", "cuda:1"), workers=2, speedup=1.2,
              rounds=rounds([0.8] * 3, clients))
    f = only(compute_findings(results(SERIAL, mg)), "scaling-poor")
    en, _, zh, _ = words(f)
    assert "1.25x vs serial on 2 devices, 62% of the ideal 2x" in en  # 1.0 s / 0.8 s
    assert "busiest device trained for 0.2 s, the other 0.6 s (75%)" in en
    assert "加速比 1.25x" in zh


def test_good_multi_gpu_scaling_is_an_info():
    mg = mode("multi-gpu", [0.53] * 3, devices=("cuda:0", "cuda:1"), workers=2, speedup=1.89)
    found = compute_findings(results(SERIAL, mg))
    assert "scaling-poor" not in codes(found)
    f = only(found, "scaling-good")
    en, hint, _, _ = words(f)
    assert f.level == "info" and "1.89x" in en and "94%" in en and hint == ""


def test_failed_modes_and_missing_serial_do_not_break_the_rules():
    failed = ModeResult(name="multiprocess", status="failed", error="boom")
    alone = mode("threaded", [2.0] * 3, workers=2)
    assert compute_findings(results(failed, alone)) == []
    assert compute_findings(Results(environment={}, config={}, modes=())) == []


def test_cpu_slot_runs_say_so():
    r = Results(environment={}, config={"device_ids": ["cpu:0", "cpu:1"]}, modes=(SERIAL,),
                devices=({"id": "cpu:0", "cores": [0]}, {"id": "cpu:1", "cores": [1]}))
    f = only(compute_findings(r), "cpu-slots")
    en, _, zh, _ = words(f)
    assert "2 CPU slot(s) (cores 0 | 1)" in en and "（核心 0 | 1）" in zh
    assert "cpu-slots" not in codes(compute_findings(results(SERIAL)))


def test_vectorized_faster_says_by_how_much_and_why():
    r = results(SERIAL, mode("vectorized", [0.70, 0.71, 0.69], speedup=1.43), clients=10)
    f = only(compute_findings(r), "vectorized-faster")
    en, hint, zh, _ = words(f)
    assert f.level == "info"
    assert "10 clients" in en and "0.7 s" in en and "1.43x" in en
    assert "1.43x" in zh and "10 个客户端" in zh and "GroupNorm" in hint


@pytest.mark.parametrize("device", ["cpu:0", "cuda:0"])
def test_vectorized_slower_is_a_warning_with_the_devices_reason(device):
    r = results(SERIAL, mode("vectorized", [1.8, 1.8, 1.8], devices=(device,), speedup=0.56))
    f = only(compute_findings(r), "vectorized-slower")
    en, hint, _, _ = words(f)
    assert f.level == "warning" and "0.56x" in en and "1.8 s" in en
    assert ("grouped convolutions" in hint) == (device == "cpu:0")
    assert ("memory bandwidth" in hint) == (device == "cpu:0")
    assert ("fewer clients per device" in hint) == (device == "cuda:0")


def test_vectorized_about_serial_gives_no_finding():
    r = results(SERIAL, mode("vectorized", [1.0, 1.0, 1.0], speedup=1.0))
    assert not {"vectorized-faster", "vectorized-slower"} & set(codes(compute_findings(r)))


def test_json_fixture_two_slots():
    found = compute_findings(read_results(FIXTURES / "findings_2slots.json"))
    assert codes(found) == ["threads-slower", "processes-time-sliced", "unbalanced-devices",
                            "scaling-poor", "cold-start-dominates", "wide-spread", "cpu-slots"]
    text = format_findings(found)
    assert text.startswith("Findings:\n- warning [threads-slower] threaded: 2 threads on cpu:0")
    assert "0.40x" in text and "hint:" in text
    zh = format_findings(found, lang="zh")
    assert zh.startswith("诊断结论：") and "建议" in zh and "0.40x" in zh
    assert format_findings([]) == ""


def test_errors_are_labelled_for_the_terminal():
    f = Finding("error", "result-differs", {"variant": "aggregate", "mode": "ray",
                                            "max_abs_diff": 0.5, "tolerance": None})
    assert format_findings([f]).startswith("Findings:\n- ERROR [result-differs] ray: its")
    assert "(tolerance ?)" in format_findings([f])
    assert format_findings([f], "zh").startswith("诊断结论：\n- 错误 [result-differs]")


def test_every_code_a_rule_can_emit_has_en_and_zh_text():
    phrases = catalogue()
    for code, variants in CODES.items():
        for variant in variants or (None,):
            key = message_key(code, variant)
            assert key in phrases, f"no message for {code} ({variant})"
            en, zh = phrases[key]
            assert en.strip() and CJK.search(zh), key
            if variant is not None:
                assert key.endswith(f".{variant}") or f"finding.{code}" in phrases


def test_every_finding_phrase_belongs_to_a_code():
    owners = {key.split(".")[1] for key in catalogue() if key.startswith("finding.")}
    assert owners <= set(CODES), owners - set(CODES)


def test_rule_modules_hold_no_words():
    """Strings in rule code are codes, variants and fact names: no spaces, no Chinese."""
    for path in RULE_MODULES:
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                raise AssertionError(f"{path.name}:{node.lineno}: an f-string in rule code")
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docstrings):
                assert not CJK.search(node.value), f"{path.name}:{node.lineno}"
                assert node.value == "" or " " not in node.value.strip(" |") or node.value in (
                    " | ",
                ), f"{path.name}:{node.lineno}: {node.value!r} reads like wording"


def test_a_polling_engine_says_how_much_of_its_round_the_step_can_be():
    from gpubench.results import ModeExtra

    flower = mode("flower", [0.41, 0.40, 0.39], speedup=2.5,
                  extra=ModeExtra(engine={"engine": "flwr run", "round_step_s": 0.1}))
    quiet = mode("ray", [0.40, 0.41, 0.39], speedup=2.5,
                  extra=ModeExtra(engine={"engine": "ray"}))
    f = only(compute_findings(results(SERIAL, flower, quiet)), "round-steps")
    assert f.facts["mode"] == "flower" and f.facts["share_pct"] == pytest.approx(25.0)
    en, hint, zh, _ = words(f)
    assert "steps of 0.1 s" in en and "flwr run" in en and "(25%)" in en
    assert "0.1 s" in zh and "25%" in zh and "serial" in hint
