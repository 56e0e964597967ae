"""A mode that computes something else never passes: deliberately wrong modes, run in real
worker processes on CPU slots, are caught, and so is bad case data."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from gpubench.config import ConfigError, RunConfig, SampleSizes, TrainConfig
from gpubench.modes import REGISTRY
from gpubench.run.harness import compare, prepare
from tests.conftest import CASES
from tests.wrong_modes import WRONG


def config(**kw) -> RunConfig:
    train = TrainConfig(batch_size=16, samples=SampleSizes(32, 32), seed=5)
    base = RunConfig(case="mlp", clients=6, train=train, devices="cpu:2", warmup=1, rounds=2,
                     sample_interval_s=None)
    return replace(base, **kw)


@pytest.fixture
def wrong_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, target in WRONG.items():
        monkeypatch.setitem(REGISTRY, name, target)


@pytest.mark.slow
def test_wrong_modes_are_caught(wrong_modes: None) -> None:
    # The warm-up and one measured round: every wrong mode fails or differs by round 2. One
    # slot: each mode is one real worker process (five pools take turns, interleaved).
    results = compare(config(modes=("serial", "multi-gpu", *WRONG), rounds=1, devices="cpu:1"))
    by = {m.name: m for m in results.modes}
    assert by["multi-gpu"].status == "ok" and by["multi-gpu"].same_result is True
    assert by["multi-gpu"].worst_client_diff == 0.0
    # Skipping a client after the warm-up: that round fails, naming the client.
    skips = by["wrong-skips"]
    assert skips.status == "failed"
    assert "round 2: client 1 was not trained" in (skips.error or "")
    # Twice, a stale row, another client's data: the per-client check names the client.
    for name, client in (("wrong-twice", 2), ("wrong-stale", 0), ("wrong-other-data", 3)):
        m = by[name]
        assert m.status == "ok", m.error
        assert m.same_result is False, name
        assert m.worst_client == client, name
        assert m.worst_client_diff is not None and m.worst_client_diff > 0.3
        # far beyond what a correct computation drifts: at least 100x the tolerance
        assert m.tolerance is not None and m.worst_client_diff >= 100 * m.tolerance, name
    # One sample of client 3 nudged by 1%: beyond the tolerance by little, adjudicated, and
    # still different (correct arithmetic of client 3 lands far closer to serial's).
    nudged = by["wrong-nudged-data"]
    assert nudged.status == "ok" and nudged.same_result is False
    assert nudged.worst_client == 3 and nudged.tolerance is not None
    assert nudged.tolerance < (nudged.worst_client_diff or 0) < 0.1
    adjudication = nudged.extra.adjudication
    assert adjudication is not None and adjudication.clients
    assert all(c.client == 3 and not c.agrees for c in adjudication.clients)
    # The wrong ones far away are not worth a retraining: left to the tolerance.
    assert by["wrong-twice"].extra.adjudication.clients == ()
    # The stale row passes the warm-up round and fails the first measured one.
    stale = by["wrong-stale"]
    assert stale.rounds[0].client_diffs[0] == 0.0
    assert stale.rounds[1].client_diffs[0] > 0.3


@pytest.mark.slow
def test_compare_exits_1_when_a_result_differs(wrong_modes: None, tmp_path, capsys) -> None:
    from gpubench.cli import main

    out = tmp_path / "r.json"
    code = main(["compare", "--case", "mlp", "--clients", "5", "--samples-per-client", "32",
                 "--batch-size", "16", "--devices", "cpu:1", "--modes", "serial,wrong-twice",
                 "--rounds", "1", "--sample-interval", "0", "--quiet", "--out", str(out)])
    assert code == 1
    data = json.loads(out.read_text())
    twice = next(m for m in data["modes"] if m["name"] == "wrong-twice")
    assert twice["same_result"] is False and twice["worst_client"] == 2


def test_dropout_case_is_detected_and_threads_are_not_reproducible() -> None:
    results = compare(config(case=f"{CASES}:dropout_case", warmup=0, rounds=1,
                             modes=("serial", "threaded", "vectorized")))
    by = {m.name: m for m in results.modes}
    assert results.config["draws_global_rng"] is True
    threaded = by["threaded"]
    assert threaded.reproducible is False and threaded.same_result is None
    assert "global RNG" in (threaded.not_reproducible_reason or "")
    # Vectorized draws serial's dropout masks per client.
    assert by["vectorized"].reproducible is True
    assert by["vectorized"].same_result is True, by["vectorized"].worst_client_diff


@pytest.mark.slow
def test_dropout_case_same_in_the_pool_workers() -> None:
    # multiprocess's workers are multi-gpu's, placed elsewhere: one of the two suffices. One
    # slot: its one worker draws every client's dropout masks, one client after another.
    results = compare(config(case=f"{CASES}:dropout_case", warmup=0, rounds=1,
                             modes=("serial", "multi-gpu"), devices="cpu:1"))
    for m in results.modes:
        assert m.status == "ok", m.error
        assert m.same_result is True, (m.name, m.worst_client_diff)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("mismatched_case", "client 1: x has 32 samples but y has 31"),
        ("wrong_shape_case", "client 0: samples are 8, the model takes 16"),
        ("empty_case", "client 2: make_data returned no samples"),
    ],
)
def test_bad_case_data_is_bad_input(case: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        prepare(config(case=f"{CASES}:{case}"))


def test_fedavg_weights_are_the_real_sample_counts() -> None:
    prep = prepare(config(case=f"{CASES}:fewer_case"))
    assert prep.weights == [32.0, 16.0] * 3
    assert list(prep.plan.sizes) == [32, 16] * 3


def test_every_round_has_an_aggregate_time_and_client_phases() -> None:
    results = compare(config(warmup=0, rounds=2, modes=("serial",)))
    (serial,) = results.modes
    for r in serial.rounds:
        assert r.aggregate_s is not None and r.aggregate_s >= 0
        for c in r.clients:
            assert set(c.phases) >= {"setup", "compute", "write", "aggregate"}
            assert sum(c.phases.values()) == pytest.approx(c.end_s - c.start_s, rel=0.05)


@pytest.mark.parametrize("mode", ["serial", "threaded"])
def test_in_process_modes_keep_every_working_thread_on_slot_0(mode: str) -> None:
    import os
    import threading

    import torch

    from gpubench.cases import load_case

    spec = f"{CASES}:affinity_case"
    seen_list = load_case(spec).loss.__globals__["SEEN_AFFINITIES"]  # the module compare loads
    torch.set_num_threads(2)
    torch.ones(1000, 1000) @ torch.ones(1000, 1000)  # an OpenMP team made before pinning
    cfg = config(case=spec, devices="cpu:2", warmup=0, rounds=1, modes=(mode,), clients=2)
    prepared = prepare(cfg)  # its probe step runs the loss outside any mode
    seen_list.clear()
    results = compare(cfg, prepared=prepared)
    assert results.modes[0].status == "ok", results.modes[0].error
    slot0 = frozenset(results.devices[0]["cores"])
    others = {t.native_id for t in threading.enumerate()
              if t.name.startswith(("gpubench-monitor", "pytest_timeout"))}
    assert seen_list
    for seen in seen_list:
        working = {tid: a for tid, a in seen.items() if tid not in others}
        assert all(a == slot0 for a in working.values()), working
    # ... and afterwards the process has its whole machine again.
    assert os.sched_getaffinity(0) != slot0 or len(os.sched_getaffinity(0)) == 1


def test_results_config_is_a_typed_record_that_round_trips() -> None:
    from gpubench.results import RunRecord, from_dict, to_dict

    results = compare(config(warmup=0, rounds=1, modes=("serial",), clients=2))
    record = results.config
    assert isinstance(record, RunRecord)
    assert record.batch_size == 16 and record.clients == 2 and record.samples == (32, 32)
    assert record["case"] == "mlp" and record.get("interleave") is True
    assert record.schedule == "interleaved" and record.schedule_blocks == ("serial",)
    assert "ray_address" not in record or record["ray_address"] is None
    again = from_dict(to_dict(results)).config
    assert again == record
    # A version-1 file's plain config is read into the same typed record.
    old = to_dict(results)
    old["schema_version"] = 1
    assert from_dict(old).config.batch_size == 16
