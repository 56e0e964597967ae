"""The round under every mode on real CPU slots: same result, assignment, failures."""

from __future__ import annotations

import os
import time

import pytest
import torch

from gpubench.assign import assign_clients
from gpubench.cases import load_case
from gpubench.config import DEFAULT_MODES, TrainConfig
from gpubench.results import Results, from_dict, to_dict
from gpubench.run.harness import compare, open_mode
from gpubench.train.fl import initial_global_state
from tests.conftest import CASES, run_config


@pytest.fixture(scope="module")
def every_mode() -> tuple[Results, list[tuple[str, str]]]:
    """One interleaved run of the four default modes (a warm-up and two rounds) with the
    progress calls it made; the tests below only read it."""
    stamps: list[tuple[str, str]] = []
    config = run_config(modes=DEFAULT_MODES, interleave=True, warmup=1, rounds=2)
    return compare(config, progress=lambda m, ph, i, t: stamps.append((m, ph))), stamps


@pytest.mark.slow
def test_every_mode_computes_serials_result_on_cpu_slots(every_mode):
    results, _ = every_mode
    by_name = {m.name: m for m in results.modes}
    assert set(by_name) == set(DEFAULT_MODES)
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


@pytest.mark.slow
def test_the_json_round_trip_keeps_every_mode_of_a_real_run(every_mode):
    results, _ = every_mode
    again = from_dict(to_dict(results))
    assert again.modes == results.modes and again.config == results.config


@pytest.mark.slow
def test_interleaved_rounds_alternate_the_real_modes(every_mode):
    _, stamps = every_mode
    rounds = [s for s in stamps if s[1] in ("warmup", "round")]
    assert rounds == [(m, phase) for phase in ("warmup", "round", "round")
                      for m in DEFAULT_MODES]


def test_the_round_trains_and_every_client_counts():
    """Equivalence means something only if training changed the model and FedAvg used
    every client: the aggregate is the weighted mean of the clients' updates."""
    config = run_config(modes=("serial",))
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


@pytest.mark.slow
def test_balanced_policy_drives_multi_gpu_placement():
    config = run_config(modes=("serial", "multi-gpu"), assign="balanced", clients=6,
                        samples=(32, 256), seed=5)
    results = compare(config)
    sizes = list(results.config["samples"])
    expected = assign_clients([float(s) for s in sizes], 2, "balanced")
    mg = results.mode("multi-gpu")
    assert mg is not None and mg.status == "ok", mg and mg.error
    placed = {c.client: int(c.device.split(":")[1]) for c in mg.rounds[0].clients}
    assert [placed[c] for c in range(6)] == expected
    assert mg.same_result is True
    assert [c.samples for c in mg.rounds[0].clients] == sizes


def test_an_exception_in_a_users_case_is_reported_with_its_message():
    config = run_config(case=f"{CASES}:failing_case", modes=("serial", "threaded"))
    results = compare(config)
    for m in results.modes:
        assert m.status == "failed"
        assert "bad batch: every label is 3" in (m.error or "")
        assert "client 2" in (m.error or "")


@pytest.mark.slow
def test_an_exception_in_a_worker_process_is_reported_with_its_message():
    results = compare(run_config(case=f"{CASES}:failing_case", modes=("multi-gpu",),
                                 devices="cpu:1"))  # one worker: it trains client 2
    (mg,) = results.modes
    assert mg.status == "failed"
    assert "bad batch: every label is 3" in (mg.error or "") and "client 2" in (mg.error or "")
    assert "Traceback" in (mg.error_detail or "")  # the worker's own, for -v


def test_a_case_loaded_from_a_factory_in_a_file():
    results = compare(run_config(case=f"{CASES}:make_tiny_case", modes=("serial", "threaded")))
    assert [m.status for m in results.modes] == ["ok", "ok"]
    assert results.mode("threaded").same_result is True  # type: ignore[union-attr]
    assert results.config["state_size"] == 16 * 8 + 8 + 8 * 4 + 4  # the factory's model


@pytest.mark.gpu
def test_every_mode_matches_serial_on_cuda():
    results = compare(run_config(devices="cuda", case="cnn", clients=4))
    for m in results.modes:
        assert m.status == "ok", m.error
        assert m.same_result is True, (m.name, m.max_abs_diff_vs_serial)


@pytest.mark.slow
def test_dynamic_assignment_hands_clients_to_whichever_worker_is_free():
    config = run_config(case=f"{CASES}:slow_case", modes=("serial", "multi-gpu"),
                        assign="dynamic", clients=6, batch_size=16, samples=16)
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


@pytest.mark.slow
def test_a_round_over_the_timeout_fails_its_mode_and_stops_its_workers():
    config = run_config(case=f"{CASES}:slow_case", modes=("multi-gpu", "serial"), clients=2,
                        devices="cpu:1",  # one worker, both clients: ~2 s against 0.5 s
                        timeout_s=0.5, batch_size=8, samples=160)  # ~1 s per client
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
def test_processes_started_in_the_block_get_the_openmp_wait(monkeypatch: pytest.MonkeyPatch,
                                                             users: str | None) -> None:
    from gpubench.machine.isolation import OPENMP_SPIN_COUNT, openmp_wait_for_children

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("GOMP_SPINCOUNT", users or "")
    if users is None:
        monkeypatch.delenv("GOMP_SPINCOUNT")
    with openmp_wait_for_children():
        assert os.environ.get("GOMP_SPINCOUNT") == (users or str(OPENMP_SPIN_COUNT))
    assert os.environ.get("GOMP_SPINCOUNT") == users  # the parent's own is as it was


@pytest.mark.slow
@pytest.mark.parametrize("users", [None])  # the user's own value: the test above
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


FIRST_CLIENT = """
import math, sys, torch
from gpubench.cases import load_case
from gpubench.config import SampleSizes, TrainConfig
from gpubench.train.fl import build_datasets, initial_global_state, make_trainer
from gpubench.train.updates import FINGERPRINT_SIZE
case, cfg = load_case("mlp"), TrainConfig(batch_size=16, samples=SampleSizes(32, 32))
trainer = make_trainer(case, cfg, "cpu", "cpu:0", 0, build_datasets(case, cfg, [0], [32], "cpu"))
trainer.sink.begin(initial_global_state(case, cfg.seed))
before = set(sys.modules)
trainer.run(0, torch.full((1, FINGERPRINT_SIZE), math.nan, dtype=torch.float64))
print(sorted(m for m in set(sys.modules) - before if m.split(".")[0] == "torch"))
"""


@pytest.mark.slow
def test_a_workers_first_client_imports_nothing_its_start_did_not() -> None:
    # What a fresh process imports on its first client (torch.optim's torch._dynamo) would be
    # timed in the first round: a worker's start imports it, so it counts as cold start.
    import subprocess
    import sys

    from tests.conftest import ROOT

    proc = subprocess.run([sys.executable, "-c", FIRST_CLIENT], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
