"""The round under every mode on real CPU slots: same result, assignment, failures."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace

import pytest
import torch

from gpubench.assign import assign_clients
from gpubench.cases import load_case
from gpubench.config import RunConfig, SampleSizes, TrainConfig
from gpubench.results import from_dict, to_dict
from gpubench.run.harness import compare, open_mode
from gpubench.train.fl import initial_global_state
from tests.conftest import CASES, spawned_workers, wait_for_training


def small(**kw) -> RunConfig:
    train = TrainConfig(batch_size=32, samples=SampleSizes(64, 64), seed=3)
    base = RunConfig(
        case="mlp",
        clients=5,
        train=train,
        devices="cpu:2",
        warmup=0,
        rounds=1,
        sample_interval_s=None,
    )
    return replace(base, **kw)


def test_every_mode_computes_serials_result_on_cpu_slots():
    results = compare(small(rounds=2))
    by_name = {m.name: m for m in results.modes}
    assert set(by_name) == {"serial", "threaded", "multiprocess", "multi-gpu"}
    for m in results.modes:
        assert m.status == "ok", m.error
        assert m.same_result is True
        assert m.max_abs_diff_vs_serial is not None and m.max_abs_diff_vs_serial <= 1e-5
        assert len(m.round_times_s) == 2
        for r in m.rounds:
            assert sorted(c.client for c in r.clients) == list(range(5))
    assert by_name["multi-gpu"].devices == ("cpu:0", "cpu:1")
    assert by_name["multiprocess"].devices == ("cpu:0",)
    assert by_name["multiprocess"].workers == 2
    # round-robin: client c on cpu:(c % 2)
    for c in by_name["multi-gpu"].rounds[0].clients:
        assert c.device == f"cpu:{c.client % 2}"
    # every single-device mode kept to device 0
    for name in ("serial", "threaded", "multiprocess"):
        assert {c.device for c in by_name[name].rounds[0].clients} == {"cpu:0"}
    # the JSON round trip keeps everything
    again = from_dict(to_dict(results))
    assert again.modes == results.modes


def test_the_round_trains_and_every_client_counts():
    """Equivalence means something only if training changed the model and FedAvg used
    every client: the aggregate is the weighted mean of the clients' updates."""
    config = small(modes=("serial",))
    with open_mode(config, "serial") as session:
        _, aggregate, clients = session.run_round()
        initial = initial_global_state(load_case("mlp"), 3)
        assert (aggregate - initial).abs().max().item() > 1e-3
    assert len(clients) == 5


def test_fedavg_is_weighted_by_samples():
    from gpubench.modes import RoundOutput
    from gpubench.run.harness import fedavg_update

    partials = [torch.tensor([0.0, 10.0], dtype=torch.float64) * 1.0,
                torch.tensor([3.0, 4.0], dtype=torch.float64) * 2.0]
    out = RoundOutput(partials, [1.0, 2.0], torch.zeros(2, 16), [])
    assert torch.allclose(fedavg_update(out), torch.tensor([2.0, 6.0], dtype=torch.float64))


def test_balanced_assignment_is_longest_first_onto_least_loaded():
    work = [5.0, 1.0, 1.0, 4.0, 3.0, 2.0]
    assert assign_clients(work, 2, "round-robin") == [0, 1, 0, 1, 0, 1]
    balanced = assign_clients(work, 2, "balanced")
    loads = [sum(w for w, d in zip(work, balanced, strict=True) if d == k) for k in range(2)]
    assert sorted(loads) == [8.0, 8.0]
    rr = assign_clients(work, 2, "round-robin")
    rr_loads = [sum(w for w, d in zip(work, rr, strict=True) if d == k) for k in range(2)]
    assert max(loads) < max(rr_loads)


def test_balanced_policy_drives_multi_gpu_placement():
    config = small(
        modes=("serial", "multi-gpu"),
        assign="balanced",
        train=TrainConfig(batch_size=32, samples=SampleSizes(32, 256), seed=5),
        clients=6,
    )
    results = compare(config)
    sizes = list(results.config["samples"])
    expected = assign_clients([float(s) for s in sizes], 2, "balanced")
    mg = results.mode("multi-gpu")
    assert mg is not None and mg.status == "ok", mg and mg.error
    placed = {c.client: int(c.device.split(":")[1]) for c in mg.rounds[0].clients}
    assert [placed[c] for c in range(6)] == expected
    assert mg.same_result is True
    assert [c.samples for c in mg.rounds[0].clients] == sizes


def test_a_killed_worker_fails_only_its_mode_within_seconds(tmp_path, monkeypatch):
    config = small(
        case=f"{CASES}:slow_case",
        modes=("multi-gpu", "serial"),
        clients=4,
        # 2 x 24 batches of 50 ms per worker: the round outlasts a slow machine's kill.
        train=TrainConfig(batch_size=8, samples=SampleSizes(192, 192)),
    )
    monkeypatch.setenv("GPUBENCH_TEST_MARKS", str(tmp_path))
    seen: dict[str, float] = {}

    def kill_soon() -> None:
        victims = {p.pid for p in spawned_workers()}
        assert victims, "no worker to kill"
        victim = wait_for_training(tmp_path, victims)  # it is inside its round now
        os.kill(victim, signal.SIGKILL)
        seen["killed"] = time.monotonic()

    def progress(mode: str, phase: str, index: int, total: int) -> None:
        if mode == "multi-gpu" and phase == "round" and "thread" not in seen:
            seen["thread"] = 1.0
            threading.Thread(target=kill_soon, daemon=True).start()
        if mode == "multi-gpu" and phase == "failed":
            seen["failed"] = time.monotonic()

    results = compare(config, progress=progress)
    mg, serial = results.mode("multi-gpu"), results.mode("serial")
    assert mg is not None and serial is not None
    assert mg.status == "failed"
    assert "died with signal SIGKILL" in (mg.error or "")
    assert seen["failed"] - seen["killed"] < 10
    assert serial.status == "ok"


def test_an_exception_in_a_users_case_is_reported_with_its_message():
    config = small(case=f"{CASES}:failing_case", modes=("serial", "multi-gpu", "threaded"))
    results = compare(config)
    for m in results.modes:
        assert m.status == "failed"
        assert "bad batch: every label is 3" in (m.error or "")
        assert "client 2" in (m.error or "")


def test_a_case_loaded_from_a_factory_in_a_file():
    results = compare(small(case=f"{CASES}:make_tiny_case", modes=("serial", "multiprocess")))
    assert [m.status for m in results.modes] == ["ok", "ok"]
    assert results.mode("multiprocess").same_result is True  # type: ignore[union-attr]


def test_interleaved_rounds_alternate_modes():
    stamps: list[tuple[str, str]] = []
    config = small(modes=("serial", "multi-gpu"), interleave=True, rounds=2, warmup=1)
    results = compare(config, progress=lambda m, ph, i, t: stamps.append((m, ph)))
    rounds = [s for s in stamps if s[1] in ("warmup", "round")]
    assert rounds == [("serial", "warmup"), ("multi-gpu", "warmup"),
                      ("serial", "round"), ("multi-gpu", "round"),
                      ("serial", "round"), ("multi-gpu", "round")]
    assert all(m.status == "ok" for m in results.modes)
    assert results.mode("multi-gpu").same_result is True  # type: ignore[union-attr]


def test_injected_clock_times_rounds_and_cold_start():
    # Each reading of the clock advances it 2 s while serial runs and 1 s while threaded
    # does: every timed span is one step, so threaded is exactly 2x as fast.
    now = {"mode": "", "t": 0.0}

    def progress(mode: str, phase: str, index: int, total: int, **_: object) -> None:
        now["mode"] = mode

    def clock() -> float:
        now["t"] += 2.0 if now["mode"] == "serial" else 1.0
        return now["t"]

    results = compare(small(modes=("serial", "threaded"), rounds=2, warmup=1), clock=clock,
                      progress=progress)
    serial, threaded = results.modes
    assert serial.cold_start_s == 2.0 and threaded.cold_start_s == 1.0
    assert serial.warmup_times_s == (2.0,)
    assert serial.round_times_s == (2.0, 2.0)
    assert threaded.round_times_s == (1.0, 1.0)
    assert threaded.speedup_vs_serial == 2.0
    assert all(r.aggregate_s == 2.0 for r in serial.rounds)


@pytest.mark.gpu
def test_every_mode_matches_serial_on_cuda():
    results = compare(small(devices="cuda", case="cnn", clients=4))
    for m in results.modes:
        assert m.status == "ok", m.error
        assert m.same_result is True, (m.name, m.max_abs_diff_vs_serial)


def test_dynamic_assignment_hands_clients_to_whichever_worker_is_free():
    config = small(
        case=f"{CASES}:slow_case",
        modes=("serial", "multi-gpu", "multiprocess"),
        assign="dynamic",
        clients=6,
        train=TrainConfig(batch_size=16, samples=SampleSizes(16, 16)),
    )
    results = compare(config)
    for m in results.modes:
        assert m.status == "ok", m.error
        assert m.same_result is True
    mg = results.mode("multi-gpu")
    assert mg is not None
    clients = mg.rounds[0].clients
    assert sorted(c.client for c in clients) == list(range(6))
    # both devices trained clients, and each device's clients ran back to back
    per_device: dict[str, list] = {}
    for c in clients:
        per_device.setdefault(c.device, []).append(c)
    assert set(per_device) == {"cpu:0", "cpu:1"}
    for cs in per_device.values():
        cs.sort(key=lambda c: c.start_s)
        for a, b in zip(cs, cs[1:], strict=False):
            assert b.start_s >= a.end_s - 1e-3


def test_dynamic_schedule_estimate_is_list_scheduling_in_client_order():
    assert assign_clients([3.0, 1.0, 1.0, 1.0], 2, "dynamic") == [0, 1, 1, 1]
    assert assign_clients([3.0, 1.0, 1.0, 1.0], 2, "balanced") == [0, 1, 1, 1]
    assert assign_clients([1.0, 1.0, 3.0, 1.0], 2, "dynamic") == [0, 1, 0, 1]


def test_a_round_over_the_timeout_fails_its_mode_and_stops_its_workers():
    config = small(
        case=f"{CASES}:slow_case",
        modes=("multi-gpu", "serial"),
        clients=2,
        timeout_s=0.5,
        train=TrainConfig(batch_size=8, samples=SampleSizes(160, 160)),  # ~1 s per client
    )
    t0 = time.monotonic()
    results = compare(config)
    mg, serial = results.mode("multi-gpu"), results.mode("serial")
    assert mg is not None and mg.status == "failed"
    assert "timed out after 0.5 s" in (mg.error or "")
    assert serial is not None and serial.status == "ok"  # in-process: not bounded
    assert time.monotonic() - t0 < 60


# --- OpenMP's idle wait on CPU slots -----------------------------------------------------------


def test_openmp_wait_is_bounded_unless_the_user_chose_one() -> None:
    from gpubench.machine.isolation import OPENMP_SPIN_COUNT, openmp_wait_environment

    assert openmp_wait_environment({}) == {"GOMP_SPINCOUNT": str(OPENMP_SPIN_COUNT)}
    assert openmp_wait_environment({"GOMP_SPINCOUNT": "5"}) == {}
    assert openmp_wait_environment({"OMP_WAIT_POLICY": "active"}) == {}


@pytest.mark.parametrize("users", [None, "123"])
def test_workers_start_with_the_openmp_wait(monkeypatch: pytest.MonkeyPatch, users: str | None) -> None:
    from gpubench.machine.devices import cpu_slots
    from gpubench.machine.isolation import OPENMP_SPIN_COUNT
    from gpubench.modes.pool import WorkerPool, WorkerSetup, WorkerSpec

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    if users is None:
        monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    else:
        monkeypatch.setenv("GOMP_SPINCOUNT", users)
    setup = WorkerSetup(
        "mlp", TrainConfig(), (1, 1), trainer="tests.cases_for_tests:make_openmp_wait_probe"
    )
    slot = cpu_slots(1)[0]
    pool = WorkerPool([WorkerSpec(0, slot, (0,)), WorkerSpec(1, slot, (1,))], setup, 2, 4)
    try:
        pool.start()
        pool.run_round(torch.zeros(4))
        written = pool.shared.fingerprints[:, 0].tolist()
    finally:
        pool.close()
    expected = OPENMP_SPIN_COUNT if users is None else int(users)
    assert written == [expected, expected]
    # The parent's own environment is as it was.
    assert os.environ.get("GOMP_SPINCOUNT") == users
