"""The CUDA path without a GPU: per-client synchronisation and CUDA-event phases, memory that
is each mode's own, recovery after an out-of-memory error, exclusive-process GPUs, and
vectorized's chunk under memory pressure. Fakes stand in for the GPU: a fake event recorder,
patched ``torch.cuda`` functions, a fake ``Device(kind="cuda")`` and the fake NVML library."""

from __future__ import annotations

import weakref
from typing import Any

import pynvml
import pytest
import torch

from gpubench.cases import load_case
from gpubench.config import SampleSizes, TrainConfig
from gpubench.machine.cuda import release_device_memory
from gpubench.machine.devices import Device
from gpubench.modes.base import ModeFailure, NotApplicable, Plan
from gpubench.modes.multiprocess import MultiprocessMode
from gpubench.modes.pool import WorkerPool, WorkerSetup, WorkerSpec
from gpubench.modes.processes import check_parent_gpu_shared
from gpubench.modes.serial import SerialMode
from gpubench.modes.vectorized import VectorizedBody, chunking
from gpubench.monitor import nvml
from gpubench.results import Results
from gpubench.run import memplan
from gpubench.run import prepare as prepare_module
from gpubench.run.harness import compare
from gpubench.train import fl
from gpubench.train.fl import ClientTrainer, flatten_state, initial_global_state, state_tensors
from gpubench.train.pipeline import PhaseClock
from gpubench.train.updates import FINGERPRINT_SIZE
from tests import fake_modes
from tests.conftest import run_config
from tests.fake_modes import Script, register
from tests.fake_nvml import FakeGpu, FakeNvmlLib, install

UUID = "GPU-0c1e2d3f-4a5b-6c7d-8e9f-001122334455"
CPU = Device("cpu:0", "cpu", 0, "CPU slot 0", (0,))

# --- one synchronise per client, CUDA events for the phases ----------------------------------


class FakeEvent:
    """A CUDA event: its time is the device clock of the fake when it was recorded."""

    def __init__(self, clock: list[float], reads: list[int]) -> None:
        self.at = clock[0]
        self.reads = reads

    def elapsed_time(self, later: FakeEvent) -> float:
        self.reads[0] += 1
        return (later.at - self.at) * 1000.0


def test_the_clock_splits_copy_and_compute_as_the_device_spent_them() -> None:
    device_clock = [0.0]
    reads = [0]
    syncs = []
    clock = PhaseClock(lambda: syncs.append(1), lambda: FakeEvent(device_clock, reads))
    for _ in range(3):  # the host runs ahead: each tick sees the device's clock move later
        clock.tick("data")
        device_clock[0] += 1.0  # the copy, 1 s of the device's
        clock.tick("copy")
        device_clock[0] += 3.0  # forward, backward and step, 3 s
        clock.tick("compute")
    assert reads == [0]  # nothing is read before the device is synchronised
    clock.tick("compute", synced=True)
    assert len(syncs) == 1
    host = clock.phases["copy"] + clock.phases["compute"]
    assert clock.phases["copy"] == pytest.approx(host / 4)
    assert clock.phases["compute"] == pytest.approx(3 * host / 4)
    assert sum(clock.phases.values()) == pytest.approx(clock._last - clock.start)


def test_a_cuda_client_synchronises_once_at_each_end_not_every_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """O(1) device-wide waits per client, whatever its steps: the CUDA trainer's default."""
    reads = [0]
    recorded = []

    def recorder(torch_device: str) -> Any:
        def record() -> FakeEvent:
            recorded.append(1)
            return FakeEvent([float(len(recorded))], reads)
        return record

    monkeypatch.setattr(fl, "event_recorder", recorder)  # what a CUDA device gives the trainer
    case = load_case("mlp")
    cfg = TrainConfig(batch_size=8, seed=1)
    data = {0: case.data(1, 0, 96, cfg.partition)}  # 12 steps
    trainer = ClientTrainer(case, cfg, "cpu", "cuda:0", 0, data)
    syncs = []
    trainer.synchronize = lambda: syncs.append(1)
    trainer.sink.begin(flatten_state(state_tensors(case.build_model())))
    fps = torch.full((1, FINGERPRINT_SIZE), float("nan"), dtype=torch.float64)
    timing = trainer.run(0, fps)
    assert len(syncs) <= 6, f"{len(syncs)} synchronise calls for one client of 12 steps"
    assert len(recorded) >= 12  # each step's phases are marked by events instead
    assert timing.phases["compute"] > 0
    assert sum(timing.phases.values()) == pytest.approx(timing.end_s - timing.start_s)


# --- out-of-memory recovery in the parent; exclusive-process GPUs ----------------------------


class Activations:
    """Stands for a failed client's model and activations on the device."""


def test_a_mode_that_ran_out_of_memory_is_closed_after_its_frames_are_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The mode's close (and the allocator's cache with it) comes after the exception that
    holds the failed round's frames is dropped, never inside the ``except`` block."""
    held: list[weakref.ref[Activations]] = []
    alive_at_close: list[bool] = []

    def out_of_memory(name: str, step: int) -> None:
        activations = Activations()
        held.append(weakref.ref(activations))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    original = fake_modes.ScriptedMode.close

    def close(self: fake_modes.ScriptedMode) -> None:
        if held:
            alive_at_close.append(held[-1]() is not None)
        original(self)

    monkeypatch.setattr(fake_modes.ScriptedMode, "close", close)
    (oom,) = register(monkeypatch, oom=Script(on_round=out_of_memory))
    results = compare(run_config(modes=("serial", oom), rounds=1))
    mode = results.mode(oom)
    assert mode is not None and mode.status == "failed" and "out of memory" in (mode.error or "")
    assert alive_at_close and alive_at_close[0] is False


def test_released_memory_is_collected_before_the_cache_is_emptied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    garbage = [Activations()]
    garbage.append(garbage)  # a reference cycle, as a traceback's frames make
    ref = weakref.ref(garbage[0])
    del garbage
    seen: list[bool] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: seen.append(ref() is None))
    release_device_memory(["cpu"])
    assert seen == []  # nothing to hand back on a CPU slot
    release_device_memory(["cuda:0"])
    assert seen == [True]


def test_prepare_hands_the_checks_and_the_floors_memory_back_and_resets_the_peak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order: list[str] = []
    real_floor = prepare_module.measure_noise_floor

    def floor(*args: Any) -> float | None:
        order.append("floor")
        return real_floor(*args)

    monkeypatch.setattr(prepare_module, "measure_noise_floor", floor)
    monkeypatch.setattr(prepare_module, "release_device_memory", lambda d: order.append("release"))
    monkeypatch.setattr(prepare_module, "reset_peak_memory", lambda d: order.append("reset"))
    prepare_module.prepare(run_config(modes=("serial",)))
    assert order == ["floor", "release", "reset"]


def exclusive_gpu(monkeypatch: pytest.MonkeyPatch, mode: int) -> Device:
    install(monkeypatch, FakeNvmlLib([FakeGpu(UUID, "00000000:1A:00.0", compute_mode=mode)]))
    return Device(id="cuda:0", kind="cuda", index=0, name="NVIDIA GeForce RTX 4090",
                  uuid=UUID, memory_total_bytes=24 << 30)


def cuda_plan(devices: tuple[Device, ...], modes: tuple[str, ...]) -> Plan:
    return Plan(run_config(modes=modes, devices="cpu:1"), devices, (64,) * 5, 100)


def test_process_modes_on_the_parents_exclusive_process_gpu_are_not_applicable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gpu0 = exclusive_gpu(monkeypatch, pynvml.NVML_COMPUTEMODE_EXCLUSIVE_PROCESS)

    def no_worker(self: Any) -> None:
        raise AssertionError("a worker was started on an exclusive-process GPU")

    monkeypatch.setattr(WorkerPool, "start", no_worker)
    mode = MultiprocessMode(cuda_plan((gpu0,), ("serial", "multiprocess")))
    with pytest.raises(NotApplicable, match="exclusive-process compute mode"):
        mode.start()
    nvml.shutdown()


def test_other_compute_modes_and_other_gpus_are_not_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gpu0 = exclusive_gpu(monkeypatch, pynvml.NVML_COMPUTEMODE_DEFAULT)
    check_parent_gpu_shared("multiprocess", cuda_plan((gpu0,), ("serial", "multiprocess")),
                            [gpu0])
    exclusive_gpu(monkeypatch, pynvml.NVML_COMPUTEMODE_EXCLUSIVE_PROCESS)
    gpu1 = Device(id="cuda:1", kind="cuda", index=1, name="NVIDIA GeForce RTX 4090")
    check_parent_gpu_shared("multi-gpu", cuda_plan((gpu0, gpu1), ("serial", "multi-gpu")),
                            [gpu1])
    nvml.shutdown()


# --- memory that is each mode's own ------------------------------------------------------------


def fake_allocator(monkeypatch: pytest.MonkeyPatch, now: list[int], peak: list[int]) -> None:
    """torch's CUDA allocator statistics, scripted: bytes in use now, and the peak."""
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d=None: now[0])
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda d=None: now[0] + (1 << 20))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d=None: peak[0])
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda d=None: peak[0] + (1 << 20))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d=None: peak.__setitem__(0, now[0]))


def test_an_in_process_modes_peak_is_its_own_not_the_parents(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Interleaved, the parent's allocator also holds the other in-process modes' replicas and
    data: a round's peak counts from what was allocated as it began, plus the mode's own."""
    GIB = 1 << 30
    now, peak = [10 * GIB], [12 * GIB]  # 10 GiB of serial's, threaded's and the harness's
    fake_allocator(monkeypatch, now, peak)
    mode = SerialMode(Plan(run_config(), (CPU,), (64,) * 5, 100))
    mode.torch_device = "cuda:0"
    mode._own = (GIB // 2, GIB // 2)  # what its start() allocated: replicas and client data
    mode._begin(torch.zeros(100))
    peak[0] = now[0] + GIB  # the round's activations
    (memory,) = mode._memory()
    assert memory.max_allocated_bytes == GIB + GIB // 2
    assert memory.max_reserved_bytes == GIB + GIB // 2


def cuda_inputs(clients: int = 128) -> memplan.Inputs:
    gpu = Device(id="cuda:0", kind="cuda", index=0, name="NVIDIA GeForce RTX 4090",
                 memory_total_bytes=24 << 30)
    cfg = run_config(modes=("serial", "vectorized"), clients=clients, devices="cpu:1")
    return memplan.Inputs(cfg, (gpu,), (512,) * clients, 2_000_000, 3 * 32 * 32 * 4, 4 << 20,
                          200 << 20)


def test_the_plan_compares_device_memory_with_what_is_free(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memplan.nvml, "free_memory", lambda d: 2 << 30)  # a user's 22 GiB job
    plan = memplan.estimate(cuda_inputs(clients=4))
    assert plan.device_free == {"cuda:0": 2 << 30}
    need = plan.device_bytes["cuda:0"]
    assert 2 << 30 < need < 24 << 30
    reason = plan.refusal()
    assert reason is not None and "2.00 GiB of its 24.00 GiB is free" in reason


def test_vectorized_is_planned_from_device_memory_not_host_ram(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """128 GiB of host RAM beside a 24 GiB card: the chunk is what fits on the card."""
    monkeypatch.setattr(memplan, "_host_available", lambda: 128 << 30)
    monkeypatch.setattr(memplan.nvml, "free_memory", lambda d: 20 << 30)
    plan = memplan.estimate(cuda_inputs())
    assert plan.device_bytes["cuda:0"] <= 20 << 30
    assert plan.refusal() is None


def test_the_faqs_num_gpus_fits_processes_in_free_memory() -> None:
    from gpubench.faq.inputs import FaqInputs
    from gpubench.faq.memory import fits

    run = Results(environment={}, config={"case": "cnn", "clients": 8},
                  modes=(), devices=({"id": "cuda:0", "kind": "cuda",
                                      "memory_total_bytes": 24 << 30},),
                  memory_plan={"estimate": {"device_free": {"cuda:0": 8 << 30}}})
    (fit,) = fits(FaqInputs(comparison=run), float(2 << 30))
    assert fit.total_bytes == 8 << 30 and fit.processes == 3


# --- vectorized's chunk under memory pressure ------------------------------------------------


def vectorized_body(monkeypatch: pytest.MonkeyPatch, free: list[int]) -> VectorizedBody:
    monkeypatch.setattr(VectorizedBody, "_available", lambda self: free[0])
    cfg = TrainConfig(samples=SampleSizes.parse("32"), batch_size=16)
    return VectorizedBody(WorkerSetup("mlp", cfg, (32,) * 5), WorkerSpec(0, CPU, tuple(range(5))),
                          "cpu")


def one_round(body: Any) -> tuple[torch.Tensor, list[Any]]:
    state = initial_global_state(load_case("mlp"), 0)
    fps = torch.full((5, FINGERPRINT_SIZE), float("nan"), dtype=torch.float64)
    body.begin(state, torch.zeros(state.numel(), dtype=torch.float64))
    timings = body.train(None, fps)
    body.finish()
    return fps, timings


def test_the_chunk_is_sized_again_from_what_the_run_leaves_at_each_round(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    free = [1 << 40]
    body = vectorized_body(monkeypatch, free)
    assert body.chunk_size == 5
    free[0] = body.per_client * 2  # other modes and programs filled the card since
    _, timings = one_round(body)
    assert body.chunk_size == 1  # half of it (VECTORIZE_SHARE) holds one client
    assert len({t.end_s for t in timings}) == 5


def test_a_chunk_that_runs_out_of_memory_is_halved_retried_and_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = vectorized_body(monkeypatch, [1 << 40])
    expected, _ = one_round(vectorized_body(monkeypatch, [1 << 40]))
    train = VectorizedBody._train

    def tight(self: VectorizedBody, params: Any, chunk: Any, x: Any, y: Any) -> None:
        if len(chunk.clients) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        train(self, params, chunk, x, y)

    monkeypatch.setattr(VectorizedBody, "_train", tight)
    fps, timings = one_round(body)
    assert torch.allclose(fps, expected, rtol=0, atol=1e-6)  # every client, trained once
    assert body.cap == 2 and max(len(c.clients) for c in body.chunks) <= 2
    windows: dict[float, list[Any]] = {}
    for t in timings:
        windows.setdefault(t.end_s, []).append(t)
    for clients in windows.values():  # a chunk's clients share its window, failed tries included
        spent = sum(sum(t.phases.values()) for t in clients)
        assert spent == pytest.approx(clients[0].end_s - clients[0].start_s)
    assert sum(t.phases.get("oom_retry", 0.0) for t in timings) > 0
    record = chunking(timings, None)
    assert record["vectorize_chunk"] == {"0": 2}
    assert record["oom_retried_chunks"] >= 1 and record["oom_lost_s"] > 0


def test_one_client_that_does_not_fit_fails_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    body = vectorized_body(monkeypatch, [1 << 40])

    def never(self: VectorizedBody, *args: Any) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(VectorizedBody, "_train", never)
    with pytest.raises(ModeFailure, match="alone does not fit"):
        one_round(body)
