"""The NVML backend, through the real ``pynvml`` binding and a fake NVML library
(see ``tests/fake_nvml.py`` for why the fake sits under the binding)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from gpubench.machine.devices import Device
from gpubench.monitor import create_sampler, environment_info, nvml
from gpubench.results import PHASE_ROUND
from tests.fake_nvml import FakeGpu, FakeNvmlLib, install

UUID_A = "GPU-aaaaaaaa-1111-2222-3333-444444444444"
UUID_B = "GPU-bbbbbbbb-5555-6666-7777-888888888888"
GIB = 2**30


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def gpu(i: int, uuid: str | None, pci: str | None = None) -> Device:
    return Device(id=f"cuda:{i}", kind="cuda", index=i, name="fake", uuid=uuid, pci_bus_id=pci)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def lib(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> Iterator[FakeNvmlLib]:
    fake = FakeNvmlLib(
        [
            FakeGpu(
                UUID_A,
                "00000000:1A:00.0",
                util=[90, 95, 100, 85],
                mem_used=[GIB, 3 * GIB],
                processes=[(4242, GIB), (777, 2 * GIB)],
                gpm=True,
                clock=clock,
            ),
            FakeGpu(
                UUID_B,
                "00000000:3D:00.0",
                util=[0, 5, 0, 10],
                mem_used=[0],
                power_mw=60_000,
                clock=clock,
            ),
        ]
    )
    install(monkeypatch, fake)
    yield fake
    nvml.shutdown()


def run_round(sampler, clock: FakeClock, mode: str, samples: int, step: float = 0.1) -> None:
    sampler.mark(mode, PHASE_ROUND, 0)
    for _ in range(samples):
        clock.now += step
        sampler.sample()


def test_two_gpus_scripted_util_and_memory(lib: FakeNvmlLib, clock: FakeClock) -> None:
    devices = [gpu(0, UUID_A), gpu(1, UUID_B)]
    sampler = create_sampler(devices, 0.1, clock=clock)
    sampler.start(background=False)
    run_round(sampler, clock, "multi-gpu", 4)
    sampler.stop()
    section = sampler.results_section()
    assert section["backend"] == "nvml"
    assert section["timeline"]["util"] == {
        "cuda:0": [90.0, 95.0, 100.0, 85.0],
        "cuda:1": [0.0, 5.0, 0.0, 10.0],
    }
    assert section["timeline"]["mem"]["cuda:0"] == [GIB, 3 * GIB, 3 * GIB, 3 * GIB]
    assert section["timeline"]["power_w"]["cuda:1"] == [60.0] * 4
    assert "kernel-active" in section["fields"]["util"]
    busy, idle = sampler.device_stats("multi-gpu")
    assert busy.busy is True and busy.util_mean_pct == 92.5 and busy.mem_peak_bytes == 3 * GIB
    assert idle.busy is False and idle.util_mean_pct == 3.8 and idle.samples == 4
    assert busy.power_mean_w == 300.0
    # 300 W for a round of 0.4 s; the counter follows the fake clock.
    assert busy.energy_per_round_j == pytest.approx(120.0, rel=1e-3)
    assert busy.sm_active_mean_pct == 42.0  # GPM on cuda:0 only (from the second sample on)
    assert idle.sm_active_mean_pct is None
    assert "sm_active" in section["timeline"] and "mem_reserved" in section["timeline"]
    assert "cuda:1: sm_active null (GPM not supported" in section["note"]


def test_process_memory_matched_by_pid(lib: FakeNvmlLib, clock: FakeClock) -> None:
    sampler = create_sampler([gpu(0, UUID_A), gpu(1, UUID_B)], 0.1, clock=clock)
    sampler.start(background=False)
    sampler.watch_pids("multiprocess", {4242: "cuda:0", 5151: "cuda:0"})
    run_round(sampler, clock, "multiprocess", 2)
    stats = sampler.device_stats("multiprocess")
    assert stats[0].process_mem_peak_bytes == {"4242": GIB}  # 777 is not ours; 5151 not seen
    assert stats[1].process_mem_peak_bytes == {}
    # Processes of the next mode that are not watched yet do not make a note ...
    sampler.watch_pids("multiprocess", {31337: "cuda:0"})
    run_round(sampler, clock, "multiprocess", 1)
    assert "none with a watched pid" not in (sampler.results_section()["note"] or "")


def test_pids_never_matched_get_a_note(lib: FakeNvmlLib, clock: FakeClock) -> None:
    # ... but watched pids that NVML never lists (another pid namespace) do.
    sampler = create_sampler([gpu(0, UUID_A)], 0.1, clock=clock)
    sampler.start(background=False)
    sampler.watch_pids("serial", {31337: "cuda:0"})
    run_round(sampler, clock, "serial", 2)
    assert sampler.device_stats("serial")[0].process_mem_peak_bytes == {}
    note = sampler.results_section()["note"]
    assert "cuda:0: NVML listed processes but none with a watched pid" in note


def test_not_supported_field_is_null_logged_once_and_not_asked_again(
    lib: FakeNvmlLib, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    lib.gpus[1].unsupported.add("nvmlDeviceGetPowerUsage")
    sampler = create_sampler([gpu(0, UUID_A), gpu(1, UUID_B)], 0.1, clock=clock)
    sampler.start(background=False)
    with caplog.at_level(logging.INFO, logger="gpubench.monitor.nvml"):
        run_round(sampler, clock, "serial", 5)
    section = sampler.results_section()
    assert section["timeline"]["power_w"]["cuda:1"] == [None] * 5
    assert section["timeline"]["power_w"]["cuda:0"] == [300.0] * 5
    assert lib.gpus[1].calls["nvmlDeviceGetPowerUsage"] == 1
    assert len([r for r in caplog.records if "power" in r.getMessage()]) == 1
    assert "cuda:1: power null (Not Supported)" in section["note"]
    assert sampler.device_stats("serial")[1].power_mean_w is None


def test_gpu_lost_mid_run_sampling_goes_on(lib: FakeNvmlLib, clock: FakeClock) -> None:
    lib.gpus[1].lost_after = 2
    sampler = create_sampler([gpu(0, UUID_A), gpu(1, UUID_B)], 0.1, clock=clock)
    sampler.start(background=False)
    run_round(sampler, clock, "multi-gpu", 4)
    section = sampler.results_section()
    assert section["timeline"]["util"]["cuda:1"] == [0.0, 5.0, None, None]
    assert section["timeline"]["util"]["cuda:0"] == [90.0, 95.0, 100.0, 85.0]
    assert "cuda:1: GPU lost" in section["note"]
    calls = sum(lib.gpus[1].calls.values())
    run_round(sampler, clock, "multi-gpu", 3)
    assert sum(lib.gpus[1].calls.values()) == calls  # a lost GPU is not asked again


def test_memory_v1_when_v2_is_missing(lib: FakeNvmlLib, clock: FakeClock) -> None:
    lib.missing.add("nvmlDeviceGetMemoryInfo_v2")
    sampler = create_sampler([gpu(0, UUID_A)], 0.1, clock=clock)
    sampler.start(background=False)
    run_round(sampler, clock, "serial", 2)
    timeline = sampler.results_section()["timeline"]
    assert timeline["mem"]["cuda:0"] == [GIB, 3 * GIB]
    assert "mem_reserved" not in timeline


@pytest.mark.parametrize(
    ("visible", "order", "device"),
    [
        ("1,0", None, gpu(0, UUID_B)),  # torch's UUID
        ("1,0", None, gpu(0, None, "00000000:3d:00.0")),  # PCI bus id (any case)
        ("GPU-bbbbbbbb,GPU-aaaaaaaa", None, gpu(0, None)),  # UUID prefixes, as CUDA allows
        ("1,0", "PCI_BUS_ID", gpu(0, None)),  # an index, in PCI bus order
    ],
)
def test_uuid_mapping_under_reordering_cuda_visible_devices(
    lib: FakeNvmlLib,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    visible: str,
    order: str | None,
    device: Device,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    if order:
        monkeypatch.setenv("CUDA_DEVICE_ORDER", order)
    else:
        monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    sampler = create_sampler([device], 0.1, clock=clock)
    sampler.start(background=False)
    run_round(sampler, clock, "serial", 2)
    # torch's cuda:0 is NVML's GPU 1 (B): its script, not GPU 0's.
    assert sampler.results_section()["timeline"]["util"]["cuda:0"] == [0.0, 5.0]


def test_index_without_pci_order_is_not_guessed(
    lib: FakeNvmlLib, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    sampler = create_sampler([gpu(0, None)], 0.1, clock=clock)
    sampler.start(background=False)
    run_round(sampler, clock, "serial", 1)
    section = sampler.results_section()
    assert section["timeline"]["util"]["cuda:0"] == [None]
    assert "cuda:0: not sampled" in section["note"] and "CUDA_DEVICE_ORDER" in section["note"]


def test_environment_info(lib: FakeNvmlLib) -> None:
    info = environment_info()
    assert info["nvidia_driver_version"] == "550.54.15"
    assert info["cuda_driver_version"] == "12.4"
    assert [g["uuid"] for g in info["nvml_gpus"]] == [UUID_A, UUID_B]
    assert info["nvml_gpus"][1]["pci_bus_id"] == "00000000:3D:00.0"
    assert info["nvml_gpus"][0]["compute_mode"] == "default"
    assert info["nvml_gpus"][0]["mig_mode"] is False


def test_no_library_falls_back_to_host_with_a_note(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    install(monkeypatch, None)
    sampler = create_sampler([gpu(0, UUID_A)], 0.1, clock=clock)
    sampler.start(background=False)
    run_round(sampler, clock, "serial", 1)
    section = sampler.results_section()
    assert section["backend"] == "host"
    assert "no NVML library" in section["note"] and "hint" in section["note"]
    assert section["timeline"]["util"]["cuda:0"] == [None]
    with pytest.raises(nvml.NvmlUnavailable, match="nvidia-ml-py"):
        create_sampler([gpu(0, UUID_A)], 0.1, backend="nvml")
    assert "no NVML library" in environment_info()["nvml_note"]


def test_gpm_sm_activity_and_occupancy_next_to_kernel_active(
    lib: FakeNvmlLib, clock: FakeClock
) -> None:
    sampler = create_sampler([gpu(0, UUID_A), gpu(1, UUID_B)], 0.1, clock=clock)
    sampler.start(background=False)
    run_round(sampler, clock, "serial", 4)
    section = sampler.results_section()
    busy, other = sampler.device_stats("serial")
    assert busy.util_mean_pct == 92.5  # kernel-active ...
    assert busy.sm_active_mean_pct == 42.0 and busy.sm_occupancy_mean_pct == 17.0  # ... vs SMs
    # The first GPM sample has no predecessor: three values for four samples.
    assert section["timeline"]["sm_occupancy"]["cuda:0"] == [None, 17.0, 17.0, 17.0]
    assert other.sm_active_mean_pct is None and other.sm_occupancy_mean_pct is None
    assert "cuda:1: sm_occupancy null (GPM not supported" in section["note"]
    assert "warp slots" in section["fields"]["sm_occupancy"]


def test_gpm_metric_the_gpu_lacks_is_null_alone_and_logged_once(
    lib: FakeNvmlLib, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    import pynvml

    lib.gpus[0].gpm_unsupported.add(pynvml.NVML_GPM_METRIC_SM_OCCUPANCY)
    sampler = create_sampler([gpu(0, UUID_A)], 0.1, clock=clock)
    sampler.start(background=False)
    with caplog.at_level(logging.INFO, logger="gpubench.monitor.nvml"):
        run_round(sampler, clock, "serial", 5)
    (stats,) = sampler.device_stats("serial")
    assert stats.sm_active_mean_pct == 42.0 and stats.sm_occupancy_mean_pct is None
    assert len([r for r in caplog.records if "sm_occupancy" in r.getMessage()]) == 1
    assert "cuda:0: sm_occupancy null (Not Supported)" in sampler.results_section()["note"]


def test_driver_samples_belong_to_the_phase_that_ran_in_their_window(
    lib: FakeNvmlLib, clock: FakeClock
) -> None:
    # The driver samples every 50 ms; kernels run only during a 0.3 s round that a poll every
    # 0.5 s would mostly miss. Polled utilisation says 50% throughout.
    start, end = 100.6, 100.9

    def busy(t: float) -> int:
        return 100 if start <= t - 0.025 < end else 0  # the middle of the 50 ms window

    buffer = [(round((99.0 + k * 0.05) * 1e6), 0) for k in range(80)]

    def samples(since_us: int) -> list[tuple[int, int]]:
        now = round(clock.now * 1e6)
        return [(ts, busy(ts / 1e6)) for ts, _ in buffer if since_us < ts <= now]

    lib.gpus[0].util = [50]
    lib.gpus[0].util_samples = samples
    sampler = create_sampler([gpu(0, UUID_A)], 0.5, clock=clock, wall=clock)
    sampler.start(background=False)  # at 100.0; the samples of 99.x are not this run's
    clock.now = 100.5
    sampler.sample()
    clock.now = start
    sampler.mark("serial", PHASE_ROUND, 0)
    clock.now = end
    sampler.mark(None, "between", None)
    clock.now = 101.5
    sampler.sample()
    (stats,) = sampler.device_stats("serial")
    assert stats.util_mean_pct == 100.0  # not 50 (polled), not diluted by its neighbours
    assert stats.samples == 6 and stats.few_samples is True  # 100.65 .. 100.90
    section = sampler.results_section()
    driver = section["util_samples"]["cuda:0"]
    assert driver["t"][0] == 0.05 and driver["start_s"][0] == 0.0  # nothing before the start
    assert len(driver["t"]) == 30 and "util_samples" in section["fields"]
    spans = section["spans"]
    assert spans[1]["util_mean_pct"] == {"cuda:0": 100.0}
    assert spans[1]["util_samples"] == {"cuda:0": 6}
    assert spans[0]["util_mean_pct"] == {"cuda:0": 0.0} == spans[2]["util_mean_pct"]


def test_driver_samples_not_supported_fall_back_to_polled_with_a_note(
    lib: FakeNvmlLib, clock: FakeClock
) -> None:
    sampler = create_sampler([gpu(0, UUID_A)], 0.1, clock=clock)
    sampler.start(background=False)
    run_round(sampler, clock, "serial", 4)
    section = sampler.results_section()
    assert "util_samples" not in section
    assert "cuda:0: util_samples null (Not Supported)" in section["note"]
    assert sampler.device_stats("serial")[0].util_mean_pct == 92.5


def test_process_kinds_tell_mps_clients_from_time_sliced_contexts(
    lib: FakeNvmlLib, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib.gpus[0].mps_clients = {4242}
    assert nvml.process_kinds(gpu(0, UUID_A)) == {4242: "mps", 777: "compute"}
    lib.gpus[0].unsupported.add("nvmlDeviceGetMPSComputeRunningProcesses_v3")
    with pytest.raises(LookupError, match="cannot list"):
        nvml.process_kinds(gpu(0, UUID_A))
    install(monkeypatch, None)
    with pytest.raises(LookupError, match="no NVML library"):
        nvml.process_kinds(gpu(0, UUID_A))
