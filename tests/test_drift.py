"""A noisy machine cannot fake a speedup: the schedule keeps the modes side by side (daemon
modes in blocks of their own), serial's rounds across the run show a change of the machine's
speed, and a one-slot ratio no device allows is called what it is."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gpubench.findings import compute_findings
from gpubench.modes import REGISTRY, interleaved_blocks
from gpubench.report.findings import finding_text
from gpubench.results import DeviceStats, ModeResult, Results, RoundRecord
from gpubench.run.harness import Block, compare, plan_blocks
from tests import fake_modes
from tests.conftest import run_config
from tests.fake_modes import Script, calls, register


def mode(name: str, times: list[float], *, devices: tuple[str, ...] = ("cpu:0",),
         workers: int = 2, util: float | None = None, first: int = 0) -> ModeResult:
    rounds = tuple(RoundRecord(first + i, False, t) for i, t in enumerate(times))
    stats = () if util is None else (DeviceStats(devices[0], True, util, util, None, 50),)
    return ModeResult(name, "ok", devices=devices, workers=workers, round_times_s=tuple(times),
                      rounds=rounds, device_stats=stats)


def results(*modes: ModeResult, interleave: bool = True) -> Results:
    config = {"case": "cnn", "clients": 10, "batch_size": 128, "interleave": interleave,
              "device_ids": ["cpu:0", "cpu:1"], "devices": "cpu:2",
              "schedule": "interleaved" if interleave else "sequential"}
    return Results(environment={}, config=config, modes=tuple(modes))


def codes(r: Results) -> dict[str, dict]:
    return {f.code: f.facts for f in compute_findings(r)}


SLOWING = [1.0, 1.0, 1.01, 1.4, 1.4, 1.41]  # serial slows by 40% across the run
QUIET = [1.0, 1.02, 0.99, 1.01, 1.0, 0.98]


def test_serial_slowing_by_40_percent_is_drift_and_names_the_one_slot_ratio() -> None:
    threaded = mode("threaded", [t / 1.3 for t in SLOWING])  # 1.3x, paired round by round
    found = codes(results(mode("serial", SLOWING, workers=1, util=100.0), threaded))
    drift = found["machine-drift"]
    assert drift["variant"] == "slower"
    assert drift["change_pct"] == pytest.approx(40.0, abs=0.5)
    assert drift["early_s"] == pytest.approx(1.0) and drift["late_s"] == pytest.approx(1.4)
    (suspect,) = drift["suspects"]["modes"]
    assert suspect["mode"] == "threaded" and suspect["speedup"] == pytest.approx(1.3)
    # The finding carries the ratio: no second warning, and no "serial leaves idle gaps".
    assert "one-device-beyond" not in found and "one-device-faster" not in found
    en, _ = finding_text(next(f for f in compute_findings(results(
        mode("serial", SLOWING, workers=1, util=100.0), threaded)) if f.code == "machine-drift"))
    assert "40% longer" in en and "threaded 1.30x" in en


def test_a_machine_that_got_faster_in_a_sequential_run_says_so() -> None:
    # serial first (a busy machine), then threaded, then serial again on the quiet machine
    serial = mode("serial", [3.0, 3.0, 3.0, 2.2, 2.25, 2.2], workers=1, util=100.0)
    threaded = mode("threaded", [2.4, 2.45, 2.4])
    found = codes(results(serial, threaded, interleave=False))
    drift = found["machine-drift"]
    assert drift["variant"] == "faster" and drift["sequential"] == {}
    assert drift["change_pct"] == pytest.approx(100 * (1 - 2.2 / 3.0), abs=0.5)
    zh = finding_text(next(f for f in compute_findings(results(serial, threaded,
                                                                interleave=False))
                           if f.code == "machine-drift"), "zh")[0]
    assert "变快" in zh and "依次运行" in zh


def test_a_quiet_run_has_no_drift_and_no_untrustworthy_ratio() -> None:
    found = codes(results(mode("serial", QUIET, workers=1, util=100.0),
                          mode("threaded", [t / 0.97 for t in QUIET])))
    assert "machine-drift" not in found and "one-device-beyond" not in found


def test_a_one_slot_ratio_beyond_serial_idle_share_without_drift_is_not_trustworthy() -> None:
    serial = mode("serial", QUIET, workers=1, util=98.0)
    fast = mode("multiprocess", [t / 1.3 for t in QUIET])
    found = codes(results(serial, fast))
    assert "machine-drift" not in found
    beyond = found["one-device-beyond"]
    assert beyond["mode"] == "multiprocess" and beyond["speedup"] == pytest.approx(1.3)
    assert beyond["serial_util"] == {"util_pct": pytest.approx(98.0)}
    assert "one-device-faster" not in found


def test_a_ratio_within_what_serial_left_idle_is_explained() -> None:
    serial = mode("serial", QUIET, workers=1, util=60.0)  # serial used 60% of the slot
    found = codes(results(serial, mode("threaded", [t / 1.3 for t in QUIET])))
    assert "one-device-beyond" not in found and "machine-drift" not in found
    assert found["one-device-faster"]["modes"][0]["mode"] == "threaded"


def test_vectorized_and_two_device_modes_are_not_one_slot_ratios() -> None:
    serial = mode("serial", QUIET, workers=1, util=100.0)
    found = codes(results(serial, mode("vectorized", [t / 1.5 for t in QUIET], workers=1),
                          mode("multi-gpu", [t / 1.9 for t in QUIET],
                               devices=("cpu:0", "cpu:1"))))
    assert "one-device-beyond" not in found


def test_daemon_modes_get_blocks_of_their_own_beside_serial() -> None:
    modes = ("serial", "threaded", "ray", "multiprocess", "flower")
    assert interleaved_blocks(modes) == (
        ("serial", "threaded", "multiprocess"), ("serial", "ray"), ("serial", "flower"))
    assert interleaved_blocks(("serial", "ray")) == (("serial", "ray"),)
    cfg = run_config(modes=modes, warmup=1, rounds=2, interleave=True)
    assert plan_blocks(cfg) == (Block(("serial", "threaded", "multiprocess"), 0),
                                Block(("serial", "ray"), 3), Block(("serial", "flower"), 6))
    sequential = plan_blocks(run_config(modes=("serial", "threaded"), warmup=1, rounds=2,
                                        interleave=False))
    assert sequential == (Block(("serial",), 0), Block(("threaded",), 0),
                          Block(("serial",), 3, retime=True))


def test_a_daemon_mode_runs_after_the_others_closed_paired_with_serial_beside_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ref, plain, daemon = register(monkeypatch, s=Script(), p=Script(), d=Script())
    monkeypatch.setitem(REGISTRY, "serial", REGISTRY[ref])
    monkeypatch.setitem(REGISTRY, "ray", REGISTRY[daemon])
    results = compare(run_config(modes=("serial", plain, "ray"), warmup=1, rounds=2,
                                 interleave=True))
    log = [(m, c) for m, c, _ in calls()]
    # the plain block closes before the daemon mode starts; serial takes turns in both
    assert log.index((plain, "close")) < log.index((daemon, "start"))
    assert [m for m, c in log if c == "round"] == [ref, plain] * 3 + [ref, daemon] * 3
    by = {m.name: m for m in results.modes}
    assert [r.index for r in by["ray"].rounds] == [3, 4, 5]
    assert [r.index for r in by["serial"].rounds] == [0, 1, 2, 3, 4, 5]
    assert by["ray"].status == "ok" and by["ray"].same_result is True
    assert results.config.schedule_blocks == (f"serial,{plain}", "serial,ray")
    assert fake_modes.LOG  # the scripted modes were the ones asked


@pytest.mark.slow
def test_a_real_compare_on_cpu_slots_is_interleaved_by_default(tmp_path) -> None:
    from gpubench.cli import main

    out = tmp_path / "r.json"
    code = main(["compare", "--case", "mlp", "--clients", "4", "--samples-per-client", "32",
                 "--batch-size", "16", "--devices", "cpu:1", "--modes",
                 "serial,threaded,multi-gpu", "--warmup", "1", "--rounds", "2",
                 "--sample-interval", "0", "--quiet", "--out", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    config = data["config"]
    assert config["interleave"] is True and config["schedule"] == "interleaved"
    assert config["schedule_blocks"] == ["serial,threaded,multi-gpu"]
    assert 0 < config["noise_floor"] < 1e-4
    by = {m["name"]: m for m in data["modes"]}
    assert [r["index"] for r in by["threaded"]["rounds"]] == [0, 1, 2]
    assert [r["index"] for r in by["serial"]["rounds"]] == [0, 1, 2]
    for m in data["modes"]:
        assert m["extra"]["tolerance"] == config["tolerance_used"]


def test_a_gpus_memory_in_an_interleaved_block_is_the_round_modes_own() -> None:
    """The device total during a's round, less what b's idle worker held at that reading."""
    from gpubench.monitor.timeline import Snapshot, mode_device_stats

    spans = [{"mode": "a", "phase": "round", "round": 0, "start_s": 0.0, "end_s": 1.0},
             {"mode": "b", "phase": "round", "round": 0, "start_s": 1.0, "end_s": 2.0}]
    gib = 1 << 30
    snap = Snapshot(spans=spans, t=[0.5, 1.5], span=[0, 1],
                    cols={"mem": {"cuda:0": [5 * gib, 6 * gib]},
                          **{c: {"cuda:0": [None, None]} for c in
                             ("util", "power_w", "energy_j", "sm_active", "sm_occupancy")}},
                    procs=[{"cuda:0": {11: 3 * gib, 22: 2 * gib}},
                           {"cuda:0": {11: 3 * gib, 22: 3 * gib}}])
    a = mode_device_stats(snap, "a", ["cuda:0"], {11: "cuda:0"}, busy_threshold_pct=50.0)[0]
    b = mode_device_stats(snap, "b", ["cuda:0"], {22: "cuda:0"}, busy_threshold_pct=50.0)[0]
    assert a.mem_peak_bytes == 3 * gib and b.mem_peak_bytes == 3 * gib
    assert a.process_mem_peak_bytes == {"11": 3 * gib}


@pytest.mark.slow
def test_modes_that_do_not_fit_at_once_run_one_after_another_and_say_why(monkeypatch) -> None:
    from gpubench.run import memplan
    from gpubench.run import prepare as preparing
    from gpubench.run.prepare import prepare

    monkeypatch.setattr(preparing, "process_rss", lambda: 600 << 20)  # the same base twice
    cfg = run_config(modes=("serial", "multi-gpu"), warmup=0, rounds=1, devices="cpu:1")
    prepare(cfg, check_fit=False)  # loads torch's runtime here (then not counted again)
    together = prepare(cfg, check_fit=False).memory
    alone = prepare(dataclasses.replace(cfg, interleave=False), check_fit=False).memory
    assert together is not None and alone is not None
    assert together.host_bytes > alone.host_bytes  # multi-gpu's workers beside serial's
    monkeypatch.setattr(memplan, "_host_available",
                        lambda: (together.host_bytes + alone.host_bytes) // 2)
    prep = prepare(cfg)
    assert prep.config.interleave is False
    assert (prep.schedule_reason or "").startswith("the run needs about")
    results = compare(cfg, prepared=prep)
    assert results.config.interleave is False and results.config.schedule == "sequential"
    assert results.config.schedule_reason == prep.schedule_reason
    assert codes(results)["schedule-sequential"]["reason"] == prep.schedule_reason
    serial = results.mode("serial")
    assert serial is not None and len(serial.round_times_s) == 2  # timed again at the end


def test_the_interleaved_memory_peak_is_the_largest_block_not_every_mode() -> None:
    from gpubench.run.memplan import ProcessEstimate, _totals

    def proc(mode: str, mib: int) -> ProcessEstimate:
        return ProcessEstimate(mode, "worker 0", "cpu:0", {"base": mib << 20})

    procs = [proc("serial", 100), proc("multi-gpu", 300), proc("ray", 500)]
    cfg = run_config(modes=("serial", "multi-gpu", "ray"), interleave=True)
    plan = _totals(procs, cfg, {"multi-gpu": 0, "ray": 0}, ())
    assert plan.host_bytes == (100 + 500) << 20 and plan.peak_modes == ("serial", "ray")
