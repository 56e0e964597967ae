"""Memory that does not grow with clients x model: the parent's FedAvg check in chunks, one
kept update, client data within its budget, and the memory plan before a run."""

from __future__ import annotations

import gc
import math
import weakref
from pathlib import Path

import pytest
import torch

from gpubench.cases import load_case
from gpubench.cli import main
from gpubench.config import RunConfig, SampleSizes, TrainConfig
from gpubench.run.harness import compare
from gpubench.train.clientdata import ClientData, data_bytes
from gpubench.train.fl import ClientTrainer
from gpubench.train.updates import (
    FINGERPRINT_SIZE,
    GAP_CHUNK,
    FedAvgUpdate,
    LastUpdates,
    Sketch,
    aggregate_gap,
)
from tests.conftest import run_config

SIZE = 2 * GAP_CHUNK + 12345  # more than two chunks, and not a multiple of the sketch's K


def partials(n: int = 3, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(SIZE, generator=gen, dtype=torch.float64) * 1e-3 for _ in range(n)]


def test_the_update_read_in_chunks_is_the_whole_update() -> None:
    ps = partials()
    whole = ps[0].clone()
    for p in ps[1:]:
        whole.add_(p)
    whole.div_(7.0)
    update = FedAvgUpdate(ps, 7.0)
    assert torch.equal(update.materialise(), whole)
    assert torch.equal(update.chunk(GAP_CHUNK - 3, GAP_CHUNK + 5), whole[GAP_CHUNK - 3 : GAP_CHUNK + 5])
    # The fingerprint of the lazily read update is the padded K x m product of the whole.
    sketch = Sketch(SIZE, seed=3)
    padded = torch.zeros(sketch.padded, dtype=torch.float64)
    padded[:SIZE] = whole
    expected = padded.view(sketch.k, sketch.m) @ sketch.signs64
    assert torch.allclose(sketch.of_vector(update), expected, rtol=1e-12, atol=0)
    assert torch.equal(sketch.of_vector(update), sketch.of_vector(whole))


def test_the_aggregate_gap_is_the_whole_vectors_gap() -> None:
    gen = torch.Generator().manual_seed(1)
    global_state = torch.randn(SIZE, generator=gen)
    u, r = partials(2, seed=2)
    gap, relative = aggregate_gap(global_state, u, r)
    g64 = global_state.to(torch.float64)
    whole = float(((g64 + u).to(torch.float32) - (g64 + r).to(torch.float32)).abs().max())
    assert gap == whole and gap > 0
    assert relative == pytest.approx(float((u - r).abs().max() / r.abs().max()), rel=1e-12)
    assert aggregate_gap(global_state, r, r) == (0.0, 0.0)
    broken = u.clone()
    broken[SIZE - 1] = math.nan  # in the last chunk: every chunk is looked at
    assert aggregate_gap(global_state, broken, r) == (math.inf, math.inf)


def test_a_mode_before_or_after_serial_is_compared_alike_and_not_kept() -> None:
    global_state = torch.zeros(SIZE)
    serial, other = (FedAvgUpdate([p], 2.0) for p in partials(2, seed=4))
    before, after = LastUpdates("serial"), LastUpdates("serial")
    before.add("multi-gpu", other, global_state)
    assert set(before.pending) == {"multi-gpu"}  # kept until serial's comes
    before.add("serial", serial, global_state)
    after.add("serial", serial, global_state)
    after.add("multi-gpu", other, global_state)
    assert before.gaps == after.gaps
    assert before.gaps["serial"] == (0.0, 0.0) and before.gaps["multi-gpu"][1] > 0
    assert not before.pending and not after.pending
    nobody = LastUpdates(None)  # no serial in the run: nothing is kept
    nobody.add("multi-gpu", other, global_state)
    assert not nobody.pending and not nobody.gaps


def small(**kw: object) -> RunConfig:
    return run_config(**{"clients": 4, "batch_size": 16, "samples": 32, **kw})


@pytest.mark.slow
def test_a_mode_run_before_serial_is_compared_with_it_and_the_plan_sits_beside_the_peak() -> None:
    results = compare(small(modes=("multi-gpu", "serial")))
    by_name = {m.name: m for m in results.modes}
    assert by_name["multi-gpu"].status == "ok", by_name["multi-gpu"].error
    assert by_name["multi-gpu"].same_result is True
    assert by_name["multi-gpu"].max_abs_diff_vs_serial is not None
    assert by_name["multi-gpu"].max_abs_diff_vs_serial <= 1e-5
    plan = results.memory_plan
    assert plan is not None
    assert plan["estimate"]["parent_bytes"] > 0
    assert plan["measured"]["parent_peak_rss_bytes"] >= plan["estimate"]["processes"][0]["parts"]["base"]
    workers = plan["measured"]["worker_rss_bytes"]["multi-gpu"]
    assert len(workers) == 2 and all(w > 0 for w in workers)


def store(budget: int | None, clients: int = 4) -> ClientData:
    case = load_case("mlp")
    cfg = TrainConfig(batch_size=8, samples=SampleSizes(8, 8), seed=1, data_budget=budget)
    return ClientData(case, cfg, range(clients), [8] * clients, "cpu", budget)


def test_client_data_within_its_budget_keeps_the_first_clients_and_makes_the_rest_again() -> None:
    one = data_bytes(*store(None).make(0))
    data = store(2 * one)
    for _ in range(2):
        for client in range(4):
            x, _ = data[client]
            assert x.shape[0] == 8
    assert sorted(data.kept) == [0, 1] and data.kept_bytes == 2 * one
    assert data.made == 2 + 2 * 2  # 0 and 1 once; 2 and 3 every time they train
    assert data.keeps(1) and not data.keeps(2)
    assert torch.equal(data[3][0], store(None)[3][0])  # made again: the same data


def test_kept_host_data_is_packed_into_slabs_of_its_own_and_unchanged() -> None:
    data = store(None, clients=40)
    kept = [data[c] for c in range(40)]
    fresh = store(None, clients=40)
    storages = {x.untyped_storage().data_ptr() for x, _ in kept}
    assert len(storages) == 1  # 40 small clients in one slab, not 40 heap blocks
    assert kept[0][0].untyped_storage().nbytes() >= 40 * data_bytes(*kept[0])
    for c in (0, 17, 39):
        x, y = kept[c]
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert torch.equal(x, fresh.make(c)[0]) and torch.equal(y, fresh.make(c)[1])


@pytest.mark.parametrize("budget, kept", [(0, 0), (None, 3)])
def test_a_trainer_holds_a_clients_data_only_while_its_store_keeps_it(
    budget: int | None, kept: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[weakref.ref[torch.Tensor]] = []  # the data the trainer was handed
    original = ClientData.__getitem__

    def handed(self: ClientData, client: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = original(self, client)
        made.append(weakref.ref(x))
        return x, y

    monkeypatch.setattr(ClientData, "__getitem__", handed)
    data = store(budget, clients=3)
    trainer = ClientTrainer(load_case("mlp"), data.cfg, "cpu", "cpu:0", 0, data)
    from gpubench.train.fl import initial_global_state

    trainer.sink.begin(initial_global_state(load_case("mlp"), 1))
    fingerprints = torch.full((3, FINGERPRINT_SIZE), math.nan, dtype=torch.float64)
    for client in range(3):
        trainer.run(client, fingerprints)
    gc.collect()
    assert len(made) == 3
    assert sum(ref() is not None for ref in made) == kept
    assert torch.isfinite(fingerprints).all()


def compare_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``gpubench compare ARGS`` in this process: (exit status, stdout, stderr)."""
    code = main(["compare", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_run_that_cannot_fit_is_refused_in_one_line_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    code, _, err = compare_cli(capsys, "--case", "resnet18", "--clients", "100000",
                               "--samples-per-client", "5000", "--devices", "cpu:2",
                               "--modes", "serial,multi-gpu", "--quiet", "--out", str(out))
    assert code == 2, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "host memory" in lines[0] and "available" in lines[0] and "--data-budget" in lines[0]
    assert not out.exists()


def test_plan_prints_every_process_and_trains_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    code, table, err = compare_cli(capsys, "--case", "cnn", "--clients", "1000",
                                   "--samples-per-client", "32", "--devices", "cpu:2",
                                   "--modes", "serial,multi-gpu", "--interleave", "--plan",
                                   "--out", str(out))
    assert code == 0, err[-2000:]
    for row in ("serial", "worker 0", "worker 1", "host peak:", "client data kept per worker"):
        assert row in table, row
    # every client's data (32 samples x 12 KiB x 1000) is in the parent's row for serial
    serial = next(line for line in table.splitlines() if line.startswith("serial"))
    assert "375" in serial.split()
    assert not out.exists()
    code, again, err = compare_cli(capsys, "--case", "cnn", "--clients", "1000",
                                   "--samples-per-client", "32", "--devices", "cpu:2",
                                   "--modes", "serial", "--plan", "--data-budget", "1M")
    assert code == 0, err[-2000:]
    assert "client data kept per worker: 0.00 GiB" in again
    serial = next(line for line in again.splitlines() if line.startswith("serial"))
    assert "375" not in serial.split()
