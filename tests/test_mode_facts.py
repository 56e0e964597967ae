"""Modes own their facts: the memory plan, the schedule and ``--mps on`` read a mode's kind,
placement, daemons and MPS twin from the mode (not from lists of names), the harness records
them with each result, and findings read the record (older files by what the name meant)."""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

import pytest

from gpubench.findings import compute_findings
from gpubench.findings.base import runs_threads
from gpubench.machine.devices import Device
from gpubench.modes import (
    FACTS,
    REGISTRY,
    interleaved_blocks,
    mode_class,
    mode_facts,
    with_mps_rows,
)
from gpubench.results import (
    KIND_INLINE,
    KIND_PROCESS,
    KIND_THREAD,
    PLACE_EACH,
    PLACE_FIRST,
    UNKNOWN,
    ModeFacts,
    ModeResult,
    Results,
    RoundRecord,
    facts_of,
    from_dict,
    to_dict,
)
from gpubench.run import memplan
from gpubench.run.harness import compare
from tests import fake_modes
from tests.conftest import run_config
from tests.fake_modes import Script, register

SLOTS = (Device("cpu:0", "cpu", 0, "slot", cores=(0,)), Device("cpu:1", "cpu", 1, "slot", cores=(1,)))


class FakeThreads:
    """A mode the table does not know, that says on its class it trains in threads."""

    facts: ClassVar[ModeFacts] = ModeFacts(KIND_THREAD, PLACE_FIRST)


class FakePool:
    """... in processes, on every device, keeping daemons, with an MPS twin."""

    facts: ClassVar[ModeFacts] = ModeFacts(KIND_PROCESS, PLACE_EACH, daemons=True,
                                           mps_twin="fake-pool+mps")


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    for cls in (FakeThreads, FakePool):
        name = "fake-threads" if cls is FakeThreads else "fake-pool"
        monkeypatch.setitem(REGISTRY, name, f"{__name__}:{cls.__name__}")


def test_every_built_in_mode_class_has_the_facts_its_name_looks_up() -> None:
    assert set(FACTS) == set(REGISTRY)
    for name in REGISTRY:
        assert mode_class(name).facts is FACTS[name] is mode_facts(name)
    assert mode_facts("threaded@torch-threads=1") is FACTS["threaded"]


def test_a_mode_without_a_table_entry_is_read_from_its_class(fakes: None) -> None:
    assert mode_facts("fake-threads") is FakeThreads.facts
    assert mode_facts("fake-pool").daemons


def plan(*modes: str, workers: int = 3):
    cfg = run_config(modes=modes, clients=4, workers=workers, workers_per_device=2)
    inputs = memplan.Inputs(cfg, SLOTS, sizes=(64,) * 4, state_size=1000,
                            data_bytes_per_sample=100, activation_bytes_per_sample=10,
                            base_bytes=1 << 20)
    return memplan.estimate(inputs).processes


def test_the_memory_plan_takes_a_modes_kind_and_placement_from_the_mode(fakes: None) -> None:
    # Threads: one replica per thread in the parent, no worker process.
    threads = [p for p in plan("fake-threads", workers=3) if p.mode == "fake-threads"]
    one = [p for p in plan("fake-threads", workers=1) if p.mode == "fake-threads"]
    assert [p.role for p in threads] == ["parent"]
    assert threads[0].parts["model"] == 3 * one[0].parts["model"] > 0
    # Processes on each device, with daemons: workers_per_device workers on both slots, and
    # the daemons' processes; the parent holds no replica.
    pool = [p for p in plan("fake-pool") if p.mode == "fake-pool"]
    workers = [p for p in pool if p.role.startswith("worker")]
    assert [p.device for p in workers] == ["cpu:0", "cpu:0", "cpu:1", "cpu:1"]
    assert any(p.role == "ray" for p in pool)
    assert "model" not in next(p for p in pool if p.role == "parent").parts


def test_the_schedule_and_mps_rows_take_daemons_and_twins_from_the_mode(fakes: None) -> None:
    modes = ("serial", "fake-threads", "fake-pool", "threaded")
    assert interleaved_blocks(modes) == (("serial", "fake-threads", "threaded"),
                                         ("serial", "fake-pool"))
    assert with_mps_rows(modes) == ("serial", "fake-threads", "fake-pool", "fake-pool+mps",
                                    "threaded")


def test_the_harness_records_each_modes_facts_and_they_survive_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (name,) = register(monkeypatch, t=Script())
    said = ModeFacts(KIND_THREAD, PLACE_FIRST)
    monkeypatch.setattr(fake_modes.Fake_t, "facts", said)  # a mode of threads, by its class
    results = compare(run_config(modes=("serial", name), rounds=1))
    by = {m.name: m for m in results.modes}
    assert by[name].facts == said and by["serial"].facts == FACTS["serial"]
    again = from_dict(json.loads(json.dumps(to_dict(results))))
    assert {m.name: m.facts for m in again.modes} == {"serial": FACTS["serial"], name: said}


def row(name: str, times: list[float], facts: ModeFacts | None = None) -> ModeResult:
    rounds = tuple(RoundRecord(i, False, t) for i, t in enumerate(times))
    return ModeResult(name, "ok", devices=("cpu:0",), workers=2, round_times_s=tuple(times),
                      rounds=rounds, facts=facts)


def results(*modes: ModeResult) -> Results:
    config = {"case": "mlp", "clients": 4, "interleave": True, "device_ids": ["cpu:0"]}
    return Results(environment={}, config=config, modes=modes)


SERIAL = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98]


def test_findings_read_the_recorded_kind_not_the_name() -> None:
    slow = [t * 2 for t in SERIAL]
    recorded = results(row("serial", SERIAL), row("pool-of-threads", slow,
                                                  ModeFacts(KIND_THREAD, PLACE_FIRST)))
    found = {f.code: f.facts for f in compute_findings(recorded)}
    assert found["threads-slower"]["mode"] == "pool-of-threads"
    # The same name without the record (an older file): no list of names knows it.
    unrecorded = results(row("serial", SERIAL), row("pool-of-threads", slow))
    assert "threads-slower" not in {f.code for f in compute_findings(unrecorded)}
    # A recorded fact wins over what the name used to mean.
    processes = row("threaded", slow, ModeFacts(KIND_PROCESS, PLACE_FIRST))
    assert not runs_threads(processes)


def test_mps_effect_pairs_the_rows_by_the_recorded_twin() -> None:
    pool = ModeFacts(KIND_PROCESS, PLACE_FIRST, mps_twin="pool-under-mps")
    r = results(row("serial", SERIAL), row("pool", SERIAL, pool),
                row("pool-under-mps", [t / 2 for t in SERIAL], ModeFacts(KIND_PROCESS, PLACE_FIRST)))
    (effect,) = [f for f in compute_findings(r) if f.code == "mps-effect"]
    assert effect.facts["mode"] == "pool" and effect.facts["twin"] == "pool-under-mps"
    assert effect.facts["variant"] == "faster"


def test_a_file_from_before_the_record_loads_and_reads_as_its_names_meant() -> None:
    old = to_dict(results(row("serial", SERIAL), row("threaded", SERIAL),
                          row("multi-gpu", SERIAL), row("streams@torch-threads=1", SERIAL)))
    for m in old["modes"]:
        del m["facts"]
    loaded = from_dict(old)
    assert all(m.facts is None for m in loaded.modes)
    kinds = {m.name: facts_of(m) for m in loaded.modes}
    assert kinds["serial"] == ModeFacts(KIND_INLINE, UNKNOWN)
    assert kinds["threaded"].kind == kinds["streams@torch-threads=1"].kind == KIND_THREAD
    assert kinds["multi-gpu"] == ModeFacts(KIND_PROCESS, UNKNOWN, mps_twin="multi-gpu+mps")
    # and a recorded file keeps what it recorded
    recorded = dataclasses.replace(loaded.modes[0], facts=FACTS["serial"])
    assert facts_of(from_dict(to_dict(results(recorded))).modes[0]) == FACTS["serial"]
