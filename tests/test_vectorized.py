"""The vectorized mode: same FedAvg result as serial, uneven clients, BatchNorm refused.

conftest's autouse fixture checks that no worker outlives a test."""

from __future__ import annotations

import os
import textwrap
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from gpubench.cases import load_case
from gpubench.config import RunConfig, SampleSizes, TrainConfig
from gpubench.machine.devices import Device
from gpubench.modes import ModeFailure
from gpubench.modes.pool import ClientLoop, WorkerSetup, WorkerSpec
from gpubench.modes.stacked import StepGroup, check_vectorizable, plan_steps
from gpubench.modes.vectorized import VectorizedBody
from gpubench.run.equivalence import relative_diff
from gpubench.run.harness import compare
from gpubench.train.fl import initial_global_state, sizes_for
from gpubench.train.updates import FINGERPRINT_SIZE
from tests.conftest import run_config

CPU = Device("cpu:0", "cpu", 0, "CPU slot 0", (0,))


def _config(case: str, samples: str, modes: tuple[str, ...], **train: int) -> RunConfig:
    return run_config(**{"case": case, "clients": 3, "samples": SampleSizes.parse(samples),
                         "batch_size": 16, "seed": 0, "devices": "cpu:1", "modes": modes,
                         **train})


# Vectorized sums its batched products in another order than serial: measured up to ~2e-5
# of an update; the run's default tolerance on CPU slots is 1e-3.
CLOSE = 1e-4


def train_body(body, state: torch.Tensor, clients: int) -> tuple[torch.Tensor, torch.Tensor, list]:
    """One round of a worker body: (fingerprints, partial sum, timings)."""
    fps = torch.full((clients, FINGERPRINT_SIZE), float("nan"), dtype=torch.float64)
    partial = torch.zeros(state.numel(), dtype=torch.float64)
    body.begin(state, partial)
    timings = body.train(None, fps)
    body.finish()
    return fps, partial, timings


def worst(a: torch.Tensor, b: torch.Tensor, rows=None) -> float:
    rows = range(a.shape[0]) if rows is None else rows
    return max(relative_diff(a[r].numpy(), b[r].numpy()) for r in rows)


# --- the step plan ----------------------------------------------------------------------------


def test_plan_even_clients_is_one_group_per_step() -> None:
    plan = plan_steps([64, 64], batch_size=32, epochs=1)
    assert plan == [
        [StepGroup((0, 1), (0, 0), (0, 0), 32)],
        [StepGroup((0, 1), (0, 0), (32, 32), 32)],
    ]


def test_plan_uneven_clients_group_by_batch_size_and_run_their_own_epochs() -> None:
    plan = plan_steps([40, 16], batch_size=16, epochs=2)
    # client 0: batches 16, 16, 8 per epoch (6 steps); client 1: one batch of 16 per epoch.
    assert len(plan) == 6
    assert plan[0] == [StepGroup((0, 1), (0, 0), (0, 0), 16)]
    assert plan[1] == [StepGroup((0, 1), (0, 1), (16, 0), 16)]
    assert plan[2] == [StepGroup((0,), (0,), (32,), 8)]
    assert plan[5] == [StepGroup((0,), (1,), (32,), 8)]
    batches = [
        (r, e, s, g.size)
        for step in plan
        for g in step
        for r, e, s in zip(g.rows, g.epochs, g.starts, strict=True)
    ]
    assert sorted(b for b in batches if b[0] == 1) == [(1, 0, 0, 16), (1, 1, 0, 16)]
    assert sum(size for r, _, _, size in batches if r == 0) == 2 * 40


# --- same result as serial ----------------------------------------------------------------------


@pytest.mark.slow
def test_vectorized_matches_serial_through_the_harness() -> None:
    results = compare(_config("mlp", "48", ("serial", "vectorized")))
    vec = results.mode("vectorized")
    assert vec is not None and vec.status == "ok", vec
    assert vec.same_result is True
    assert vec.max_abs_diff_vs_serial is not None and vec.max_abs_diff_vs_serial <= 1e-5
    assert vec.workers == 1 and vec.devices == ("cpu:0",)
    clients = vec.rounds[0].clients
    assert [c.client for c in clients] == [0, 1, 2]
    assert all(c.samples == 48 for c in clients)
    if os.path.exists("/proc/self/schedstat"):  # each client's share of the chunk's waiting
        assert all(c.wait_s is not None and 0 <= c.wait_s <= c.end_s - c.start_s
                   for c in clients)


UNEVEN = TrainConfig(samples=SampleSizes.parse("20..70"), batch_size=16, local_epochs=2)


@pytest.fixture(scope="module")
def uneven_round() -> dict:
    """Five clients of uneven sizes, two local epochs: one round of the serial client loop and
    of the unchunked vectorized body, in this process (the tests below only read it)."""
    sizes = tuple(sizes_for(UNEVEN, 5))
    state = initial_global_state(load_case("mlp"), UNEVEN.seed)
    spec = WorkerSpec(0, CPU, (0, 1, 2, 3, 4))
    whole = VectorizedBody(WorkerSetup("mlp", UNEVEN, sizes), spec, "cpu")
    fps, partial, _ = train_body(whole, state, 5)
    serial = train_body(ClientLoop(WorkerSetup("mlp", UNEVEN, sizes), spec, "cpu"), state, 5)[0]
    return {"sizes": sizes, "state": state, "spec": spec, "chunks": len(whole.chunks),
            "fps": fps, "partial": partial, "serial": serial}


def test_uneven_client_sizes_match_serial(uneven_round: dict) -> None:
    assert len(set(uneven_round["sizes"])) > 1
    assert worst(uneven_round["fps"], uneven_round["serial"]) <= CLOSE


def test_momentum_zero_matches_serial() -> None:
    cfg = TrainConfig(samples=SampleSizes.parse("40"), batch_size=16, momentum=0.0)
    setup = WorkerSetup("mlp", cfg, (40, 40))
    spec = WorkerSpec(0, CPU, (0, 1))
    state = initial_global_state(load_case("mlp"), 0)
    a = train_body(ClientLoop(setup, spec, "cpu"), state, 2)[0]
    b = train_body(VectorizedBody(setup, spec, "cpu"), state, 2)[0]
    assert worst(b, a) <= CLOSE


@pytest.mark.parametrize("mine", [(0, 2), (1, 2, 4), (3,)])  # evenly spaced or not
def test_only_this_workers_rows_are_written(mine: tuple[int, ...]) -> None:
    cfg = TrainConfig(samples=SampleSizes.parse("32"), batch_size=16)
    setup = WorkerSetup("mlp", cfg, (32,) * 5)
    state = initial_global_state(load_case("mlp"), 0)
    fps, partial, timings = train_body(VectorizedBody(setup, WorkerSpec(1, CPU, mine), "cpu"),
                                       state, 5)
    assert [t.client for t in timings] == list(mine)
    expected, expected_partial, _ = train_body(ClientLoop(setup, WorkerSpec(1, CPU, mine), "cpu"),
                                               state, 5)
    for c in range(5):
        if c in mine:
            assert relative_diff(fps[c].numpy(), expected[c].numpy()) <= CLOSE, c
        else:
            assert bool(fps[c].isnan().all()), c
    assert (partial - expected_partial).abs().max().item() <= 1e-5 * 32 * len(mine)


# --- what vmap cannot do, and dropout -----------------------------------------------------------


def test_batchnorm_error_names_the_layer() -> None:
    model = nn.Sequential(OrderedDict(fc=nn.Linear(4, 4), bn1=nn.BatchNorm1d(4)))
    with pytest.raises(ModeFailure, match=r"layer 'bn1' \(BatchNorm1d\) keeps running statistics"):
        check_vectorizable(model)
    check_vectorizable(nn.Sequential(nn.Linear(4, 4), nn.GroupNorm(2, 4)))
    check_vectorizable(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False)))


CASES = textwrap.dedent(
    """
    from collections import OrderedDict

    import torch
    from torch import nn

    from gpubench.cases import Case

    def bn_model():
        return nn.Sequential(OrderedDict(
            flat=nn.Flatten(), fc=nn.Linear(8, 8), bn1=nn.BatchNorm1d(8), out=nn.Linear(8, 2)))

    def same_data(seed, client, n, partition):
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(n, 8, generator=gen), torch.randint(0, 2, (n,), generator=gen)

    def dropout_model():
        return nn.Sequential(nn.Linear(8, 64), nn.Dropout(0.5), nn.Linear(64, 2))

    BN = Case("bn", bn_model, (8,), 2)
    DROPOUT = Case("dropout", dropout_model, (8,), 2, make_data=same_data)

    def small_model():
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))

    def some_ignored(seed, client, n, partition):
        gen = torch.Generator().manual_seed(seed * 100 + client)
        y = torch.randint(0, 3, (n,), generator=gen)
        y[torch.rand(n, generator=gen) < 0.3] = -100  # cross_entropy's ignore_index
        return torch.randn(n, 8, generator=gen), y

    def smoothed(logits, y):
        return nn.functional.cross_entropy(logits, y, label_smoothing=0.1) + logits.pow(2).mean()

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = nn.Linear(8, 16), nn.Linear(16, 3)

        def forward(self, x):
            h = torch.relu(self.body(x))
            return self.head(h), h

    def two_head_loss(out, y):
        logits, h = out
        return nn.functional.cross_entropy(logits, y) + 0.01 * h.pow(2).mean()

    class ScaledLinear(nn.Linear):  # a Linear with a forward of its own
        def forward(self, x):
            return 2.0 * super().forward(x)

    def mixed_model():
        return nn.Sequential(
            nn.Flatten(start_dim=1, end_dim=2),
            nn.Sequential(nn.Linear(8, 16, bias=False), nn.LayerNorm(16), nn.GELU()),
            ScaledLinear(16, 16),
            nn.Tanh(),
            nn.Linear(16, 3),
        )

    IGNORED = Case("ignored", small_model, (8,), 3, make_data=some_ignored)
    MIXED = Case("mixed", mixed_model, (2, 4), 3)
    TUPLE_OUT = Case("tuple-out", TwoHeads, (8,), 3, loss=two_head_loss)
    OWN_LOSS = Case("own-loss", small_model, (8,), 3, loss=smoothed)
    """
)


@pytest.fixture
def case_file(tmp_path: Path) -> Path:
    path = tmp_path / "vec_cases.py"
    path.write_text(CASES)
    return path


@pytest.mark.slow
def test_batchnorm_case_fails_at_start_naming_the_layer(case_file: Path) -> None:
    results = compare(_config(f"{case_file}:BN", "16", ("vectorized",)))
    vec = results.mode("vectorized")
    assert vec is not None and vec.status == "failed"
    assert vec.error is not None and "'bn1' (BatchNorm1d)" in vec.error
    assert "GroupNorm" in vec.error


def test_dropout_draws_a_different_mask_per_client(case_file: Path) -> None:
    # Every client has the same data and one batch holding all of it, so without per-client
    # randomness the clients would end up (all but) identical.
    cfg = TrainConfig(samples=SampleSizes.parse("32"), batch_size=32, momentum=0.0)
    setup = WorkerSetup(f"{case_file}:DROPOUT", cfg, (32, 32))
    state = initial_global_state(load_case(f"{case_file}:DROPOUT"), 0)
    spec = WorkerSpec(0, CPU, (0, 1))
    fps = train_body(VectorizedBody(setup, spec, "cpu"), state, 2)[0]
    assert relative_diff(fps[0].numpy(), fps[1].numpy()) > 1e-2
    # ... and each client's mask is the one serial draws for it.
    serial = train_body(ClientLoop(setup, spec, "cpu"), state, 2)[0]
    assert worst(fps, serial) <= CLOSE


def _serial_and_vectorized(case: str, sizes: tuple[int, ...]) -> float:
    cfg = TrainConfig(samples=SampleSizes(min(sizes), max(sizes)), batch_size=16)
    setup = WorkerSetup(case, cfg, sizes)
    spec = WorkerSpec(0, CPU, tuple(range(len(sizes))))
    state = initial_global_state(load_case(case), 0)
    a = train_body(ClientLoop(setup, spec, "cpu"), state, len(sizes))[0]
    b = train_body(VectorizedBody(setup, spec, "cpu"), state, len(sizes))[0]
    return worst(b, a)


def test_ignored_targets_count_per_client_as_in_cross_entropy(case_file: Path) -> None:
    # The whole-group cross entropy must average each client over its own counted targets.
    assert _serial_and_vectorized(f"{case_file}:IGNORED", (40, 40, 24)) <= CLOSE


def test_a_case_with_its_own_loss_is_vmapped_and_matches_serial(case_file: Path) -> None:
    assert _serial_and_vectorized(f"{case_file}:OWN_LOSS", (40, 24)) <= CLOSE


def test_a_model_with_several_outputs_reaches_its_own_loss(case_file: Path) -> None:
    assert _serial_and_vectorized(f"{case_file}:TUPLE_OUT", (40, 40)) <= CLOSE


def test_parameters_take_their_gradients_layout() -> None:
    cfg = TrainConfig(samples=SampleSizes.parse("32"), batch_size=16)
    setup = WorkerSetup("mlp", cfg, (32, 32, 32))
    body = VectorizedBody(setup, WorkerSpec(0, CPU, (0, 1, 2)), "cpu")
    state = initial_global_state(load_case("mlp"), 0)
    params = body._load(state, 3)
    data = body._data(body.chunks[0])
    x, y = body._batch(torch.arange(3)[:, None] * 32 + torch.arange(16), *data)
    grads = body._grads(params, x, y)
    assert any(not g.is_contiguous() for g in grads.values())  # the transposed weight grads
    for name, g in grads.items():
        assert params[name].stride() == g.stride(), name
        # Every client starts from the global model, whatever the layout.
        slot = body.param_slots[name]
        one = state[slot.offset : slot.offset + slot.numel].view(slot.shape)
        assert bool((params[name] == one).all()), name


def test_sequential_models_run_layer_by_layer_and_others_are_vmapped(case_file: Path) -> None:
    from gpubench.modes.stacked import StackedSequential

    mixed = load_case(f"{case_file}:MIXED").build_model()
    stacked = StackedSequential.of(mixed)
    assert stacked is not None
    kinds = [type(m).__name__ for _, m in stacked.layers]
    assert kinds == ["Flatten", "Linear", "LayerNorm", "GELU", "ScaledLinear", "Tanh", "Linear"]
    assert set(stacked.vmapped) == {"1.1.", "2."}  # LayerNorm and the Linear subclass
    assert StackedSequential.of(load_case("cnn").build_model()) is not None
    assert StackedSequential.of(nn.Sequential(nn.ReLU(), nn.Tanh())) is None  # no Linear
    tied = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    tied[1].weight = tied[0].weight
    assert StackedSequential.of(tied) is None
    assert StackedSequential.of(load_case("resnet18").build_model()) is None


def test_layer_by_layer_forward_equals_the_vmapped_model(case_file: Path) -> None:
    from torch.func import functional_call, vmap

    from gpubench.modes.stacked import StackedSequential

    model = load_case(f"{case_file}:MIXED").build_model()
    stacked = StackedSequential.of(model)
    assert stacked is not None
    gen = torch.Generator().manual_seed(3)
    params = {
        k: torch.randn(4, *v.shape, generator=gen) for k, v in model.named_parameters()
    }
    x = torch.randn(4, 5, 2, 4, generator=gen)
    expected = vmap(lambda p, xb: functional_call(model, p, (xb,)))(params, x)
    assert (stacked(params, x) - expected).abs().max().item() <= 1e-5


def test_a_mixed_sequential_matches_serial(case_file: Path) -> None:
    assert _serial_and_vectorized(f"{case_file}:MIXED", (40, 24, 40)) <= CLOSE


# --- chunks of clients ----------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 2, 4])
def test_chunks_of_clients_compute_the_unchunked_result(chunk: int, uneven_round: dict) -> None:
    sizes, state, spec = uneven_round["sizes"], uneven_round["state"], uneven_round["spec"]
    assert uneven_round["chunks"] == 1
    chunked = VectorizedBody(
        WorkerSetup("mlp", UNEVEN, sizes, options={"vectorize_chunk": chunk}), spec, "cpu"
    )
    assert [len(c.clients) for c in chunked.chunks][0] == chunk
    assert sum(len(c.clients) for c in chunked.chunks) == 5
    a_fps, a_partial = uneven_round["fps"], uneven_round["partial"]
    b_fps, b_partial, timings = train_body(chunked, state, 5)
    assert [t.client for t in timings] == [0, 1, 2, 3, 4]
    assert worst(b_fps, a_fps) <= CLOSE
    assert (a_partial - b_partial).abs().max().item() <= 1e-6 * float(a_partial.abs().max())
    assert worst(b_fps, uneven_round["serial"]) <= CLOSE
    # Each client's phases add up to its share of its chunk's window, the data phase included.
    for t in timings:
        assert set(t.phases) == {"data", "setup", "compute", "write"}
        assert all(v >= 0 for v in t.phases.values())


def test_the_chunk_holds_as_many_clients_as_fit() -> None:
    from gpubench.modes.stacked import chunk_size, chunks

    assert chunk_size(1000, per_client=10, available=10_000, workers=1) == 500  # half of it
    assert chunk_size(1000, per_client=10, available=10_000, workers=2) == 250
    assert chunk_size(3, per_client=10, available=10_000, workers=1) == 3
    assert chunk_size(1000, per_client=10**9, available=10_000, workers=1) == 1
    assert chunk_size(1000, per_client=10, available=10_000, workers=1, option=7) == 7
    assert [list(r) for r in chunks(5, 2)] == [[0, 1], [2, 3], [4]]


def test_a_worker_short_of_memory_trains_in_chunks(monkeypatch) -> None:
    cfg = TrainConfig(samples=SampleSizes.parse("32"), batch_size=16)
    monkeypatch.setattr(VectorizedBody, "_available", lambda self: 1)
    body = VectorizedBody(WorkerSetup("mlp", cfg, (32,) * 3), WorkerSpec(0, CPU, (0, 1, 2)),
                          "cpu")
    assert [c.clients for c in body.chunks] == [(0,), (1,), (2,)]


@pytest.mark.slow
def test_the_cli_option_reaches_the_workers() -> None:
    results = compare(
        run_config(clients=4, devices="cpu:1", modes=("serial", "vectorized"), samples=32,
                   batch_size=16, seed=0, options={"vectorize_chunk": 3})
    )
    vec = results.mode("vectorized")
    assert vec is not None and vec.same_result is True, vec
    windows = {(c.start_s, c.end_s) for c in vec.rounds[0].clients}
    assert len(windows) == 2  # two chunks: clients 0-2, then 3
