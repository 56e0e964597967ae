"""A fake NVML *library* for the real ``pynvml`` binding.

Why this fake and not a fake behind the facade: ``pynvml`` finds every C function with
``getattr(pynvml.nvmlLib, name)`` and calls it with ctypes arguments (``byref`` structs,
string buffers, ``c_uint`` values). Putting a Python object with those C names in
``pynvml.nvmlLib`` therefore runs the real binding end to end — its struct layouts, the
``nvmlMemory_v2`` version field, the two-call protocol of
``nvmlDeviceGetComputeRunningProcesses``, the GPM structs, the mapping of return codes to
``NVMLError_NotSupported``/``NVMLError_GpuIsLost`` subclasses, bytes/str conversion — so a
change in the binding that breaks the facade shows up here. It needs no compiler and no
shared library, unlike a fake ``libnvidia-ml.so``; a fake facade would test none of the
binding. A name the fake does not define raises ``AttributeError``, which the binding turns
into ``NVMLError_FunctionNotFound``, exactly as an old driver does.

Each GPU is scripted: ``util`` and ``mem_used`` are lists consumed one value per query (the
last repeats), ``processes`` lists (pid, bytes), ``mps_clients`` the pids among them that are
MPS clients, ``process_util`` the driver's per-process SM samples, ``unsupported`` names
C functions that return NOT_SUPPORTED, ``lost_after`` makes
every call fail with GPU_IS_LOST after that many utilisation queries. With ``gpm`` the GPU
offers GPM (``sm_active``, ``sm_occupancy``; ``gpm_unsupported`` metric ids fail alone);
``compute_mode`` is NVML's (e.g. ``pynvml.NVML_COMPUTEMODE_EXCLUSIVE_PROCESS``).
``util_samples(since_us)`` scripts the driver's timestamped utilisation buffer: the
(timestamp in us, %) samples newer than ``since_us``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pynvml

SUCCESS = pynvml.NVML_SUCCESS
NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
NOT_FOUND = pynvml.NVML_ERROR_NOT_FOUND
INSUFFICIENT_SIZE = pynvml.NVML_ERROR_INSUFFICIENT_SIZE
GPU_IS_LOST = pynvml.NVML_ERROR_GPU_IS_LOST
VERSION_MISMATCH = pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH


@dataclass
class FakeGpu:
    uuid: str
    pci_bus_id: str
    name: str = "NVIDIA Fake H100"
    util: list[int] = field(default_factory=lambda: [0])
    mem_used: list[int] = field(default_factory=lambda: [0])
    mem_total: int = 80 * 2**30
    mem_reserved: int = 500 * 2**20
    power_mw: int = 300_000
    processes: list[tuple[int, int]] = field(default_factory=list)
    unsupported: set[str] = field(default_factory=set)
    lost_after: int | None = None
    gpm: bool = False
    compute_mode: int = pynvml.NVML_COMPUTEMODE_DEFAULT
    sm_active: float = 42.0
    sm_occupancy: float = 17.0
    gpm_unsupported: set[int] = field(default_factory=set)
    util_samples: Callable[[int], list[tuple[int, int]]] | None = None
    mps_clients: set[int] = field(default_factory=set)
    # nvmlDeviceGetProcessUtilization: (pid, timestamp in us, smUtil %) samples; a call
    # returns those newer than its timestamp (NOT_FOUND when there are none).
    process_util: list[tuple[int, int, int]] = field(default_factory=list)
    clock: Callable[[], float] | None = None  # energy = power * clock() when given
    util_calls: int = 0
    mem_calls: int = 0
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def lost(self) -> bool:
        return self.lost_after is not None and self.util_calls >= self.lost_after


def _next(values: list[int], i: int) -> int:
    return values[min(i, len(values) - 1)]


def _out(arg: Any) -> Any:
    """The ctypes object behind a ``byref(...)`` argument."""
    return arg._obj


def _set_pointer(ptr: Any, value: int) -> None:
    """Store an opaque handle value in a ctypes pointer object, as the C library would."""
    raw = ctypes.c_void_p(value)
    ctypes.memmove(ctypes.addressof(ptr), ctypes.addressof(raw), ctypes.sizeof(raw))


def _pointer_value(ptr: Any) -> int:
    return ctypes.cast(ptr, ctypes.c_void_p).value or 0


class _Function:
    """A callable with settable attributes, since the binding sets ``fn.restype``."""

    def __init__(self, fn: Callable[..., int]) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


_HANDLE_BASE = 0x1000


class FakeNvmlLib:
    """Stands in for ``CDLL("libnvidia-ml.so.1")``; install with :func:`install`."""

    driver_version = "550.54.15"
    nvml_version = "12.550.54.15"
    cuda_version = 12040

    def __init__(self, gpus: list[FakeGpu]) -> None:
        self.gpus = gpus
        self.missing: set[str] = set()  # C functions this "driver" does not have
        self._gpm_samples: dict[int, tuple[int, int]] = {}  # sample -> (gpu, n-th sample)
        self._next_sample = 0x9000
        self._gpm_ticks: dict[int, int] = {}

    def __getattr__(self, name: str) -> _Function:
        if name.startswith("_") or name in self.missing:
            raise AttributeError(name)
        impl = getattr(type(self), "c_" + name, None)
        if impl is None:
            raise AttributeError(name)
        return _Function(lambda *args: self._dispatch(name, impl, args))

    def _dispatch(self, name: str, impl: Callable[..., int], args: tuple[Any, ...]) -> int:
        if args and isinstance(args[0], pynvml.c_nvmlDevice_t):
            gpu = self._gpu(args[0])
            if gpu is None:
                return pynvml.NVML_ERROR_INVALID_ARGUMENT
            gpu.calls[name] = gpu.calls.get(name, 0) + 1
            if gpu.lost:
                return GPU_IS_LOST
            if name in gpu.unsupported:
                return NOT_SUPPORTED
            return int(impl(self, gpu, *args[1:]))
        return int(impl(self, *args))

    def _gpu(self, handle: Any) -> FakeGpu | None:
        i = _pointer_value(handle) - _HANDLE_BASE
        return self.gpus[i] if 0 <= i < len(self.gpus) else None

    def _give_handle(self, i: int, out: Any) -> int:
        if not 0 <= i < len(self.gpus):
            return pynvml.NVML_ERROR_INVALID_ARGUMENT
        _set_pointer(_out(out), _HANDLE_BASE + i)
        return SUCCESS

    # --- system ----------------------------------------------------------------------------

    def c_nvmlInitWithFlags(self, flags: int) -> int:
        return SUCCESS

    def c_nvmlShutdown(self) -> int:
        return SUCCESS

    def c_nvmlErrorString(self, code: int) -> bytes:
        return b"fake NVML error"

    def c_nvmlSystemGetDriverVersion(self, buf: Any, size: Any) -> int:
        buf.value = self.driver_version.encode()
        return SUCCESS

    def c_nvmlSystemGetNVMLVersion(self, buf: Any, size: Any) -> int:
        buf.value = self.nvml_version.encode()
        return SUCCESS

    def c_nvmlSystemGetCudaDriverVersion(self, out: Any) -> int:
        _out(out).value = self.cuda_version
        return SUCCESS

    def c_nvmlDeviceGetCount_v2(self, out: Any) -> int:
        _out(out).value = len(self.gpus)
        return SUCCESS

    def c_nvmlDeviceGetHandleByIndex_v2(self, index: Any, out: Any) -> int:
        return self._give_handle(index.value, out)

    def c_nvmlDeviceGetHandleByUUID(self, uuid: Any, out: Any) -> int:
        text = uuid.value.decode()
        for i, g in enumerate(self.gpus):
            if g.uuid == text:
                return self._give_handle(i, out)
        return NOT_FOUND

    def c_nvmlDeviceGetHandleByPciBusId_v2(self, bus_id: Any, out: Any) -> int:
        text = bus_id.value.decode().upper()
        for i, g in enumerate(self.gpus):
            if g.pci_bus_id.upper() == text:
                return self._give_handle(i, out)
        return NOT_FOUND

    # --- per GPU (the first argument after the handle) ----------------------------------------

    def c_nvmlDeviceGetName(self, gpu: FakeGpu, buf: Any, size: Any) -> int:
        buf.value = gpu.name.encode()
        return SUCCESS

    def c_nvmlDeviceGetUUID(self, gpu: FakeGpu, buf: Any, size: Any) -> int:
        buf.value = gpu.uuid.encode()
        return SUCCESS

    def c_nvmlDeviceGetPciInfo_v3(self, gpu: FakeGpu, out: Any) -> int:
        _out(out).busId = gpu.pci_bus_id
        return SUCCESS

    def c_nvmlDeviceGetComputeMode(self, gpu: FakeGpu, out: Any) -> int:
        _out(out).value = gpu.compute_mode
        return SUCCESS

    def c_nvmlDeviceGetMigMode(self, gpu: FakeGpu, current: Any, pending: Any) -> int:
        _out(current).value = _out(pending).value = 0
        return SUCCESS

    def c_nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu, out: Any) -> int:
        util = _out(out)
        util.gpu = _next(gpu.util, gpu.util_calls)
        util.memory = 0
        gpu.util_calls += 1
        return SUCCESS

    def _mem_used(self, gpu: FakeGpu) -> int:
        used = _next(gpu.mem_used, gpu.mem_calls)
        gpu.mem_calls += 1
        return used

    def c_nvmlDeviceGetMemoryInfo_v2(self, gpu: FakeGpu, out: Any) -> int:
        mem = _out(out)
        if mem.version != pynvml.nvmlMemory_v2:
            return VERSION_MISMATCH
        mem.used = self._mem_used(gpu)
        mem.total, mem.reserved = gpu.mem_total, gpu.mem_reserved
        mem.free = gpu.mem_total - gpu.mem_reserved - mem.used
        return SUCCESS

    def c_nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu, out: Any) -> int:
        mem = _out(out)
        mem.used = self._mem_used(gpu)
        mem.total, mem.free = gpu.mem_total, gpu.mem_total - mem.used
        return SUCCESS

    def c_nvmlDeviceGetPowerUsage(self, gpu: FakeGpu, out: Any) -> int:
        _out(out).value = gpu.power_mw
        return SUCCESS

    def c_nvmlDeviceGetTotalEnergyConsumption(self, gpu: FakeGpu, out: Any) -> int:
        seconds = gpu.clock() if gpu.clock is not None else 0.0
        _out(out).value = int(gpu.power_mw * seconds)  # mW * s = mJ
        return SUCCESS

    def _processes(self, gpu: FakeGpu, count: Any, procs: Any) -> int:
        n = _out(count)
        if procs is None:
            n.value = len(gpu.processes)
            return INSUFFICIENT_SIZE if gpu.processes else SUCCESS
        if n.value < len(gpu.processes):
            return INSUFFICIENT_SIZE
        for i, (pid, used) in enumerate(gpu.processes):
            procs[i].pid, procs[i].usedGpuMemory = pid, used
        n.value = len(gpu.processes)
        return SUCCESS

    c_nvmlDeviceGetComputeRunningProcesses_v3 = _processes
    c_nvmlDeviceGetComputeRunningProcesses_v2 = _processes

    def c_nvmlDeviceGetMPSComputeRunningProcesses_v3(
        self, gpu: FakeGpu, count: Any, procs: Any
    ) -> int:
        clients = FakeGpu(gpu.uuid, gpu.pci_bus_id)
        clients.processes = [(p, b) for p, b in gpu.processes if p in gpu.mps_clients]
        return self._processes(clients, count, procs)

    def c_nvmlDeviceGetProcessUtilization(
        self, gpu: FakeGpu, out: Any, count: Any, since: Any
    ) -> int:
        newer = [s for s in gpu.process_util if s[1] > since.value]
        n = _out(count)
        if not newer:
            n.value = 0
            return NOT_FOUND
        if out is None or n.value < len(newer):
            n.value = len(newer)
            return INSUFFICIENT_SIZE
        for i, (pid, ts, sm) in enumerate(newer):
            out[i].pid, out[i].timeStamp, out[i].smUtil = pid, ts, sm
        n.value = len(newer)
        return SUCCESS

    def c_nvmlDeviceGetSamples(
        self, gpu: FakeGpu, kind: Any, since: Any, value_type: Any, count: Any, out: Any
    ) -> int:
        if gpu.util_samples is None or kind.value != pynvml.NVML_GPU_UTILIZATION_SAMPLES:
            return NOT_SUPPORTED
        samples = gpu.util_samples(since.value)
        if not samples:
            return NOT_FOUND  # as the driver: nothing newer than the timestamp given
        n = _out(count)
        _out(value_type).value = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
        if out is None:
            n.value = len(samples)
            return SUCCESS
        n.value = min(n.value, len(samples))
        for i, (ts, value) in enumerate(samples[: n.value]):
            out[i].timeStamp, out[i].sampleValue.uiVal = ts, value
        return SUCCESS

    # --- GPM -----------------------------------------------------------------------------

    def c_nvmlGpmQueryDeviceSupport(self, gpu: FakeGpu, out: Any) -> int:
        _out(out).isSupportedDevice = int(gpu.gpm)
        return SUCCESS

    def c_nvmlGpmSampleAlloc(self, out: Any) -> int:
        self._next_sample += 0x10
        _set_pointer(_out(out), self._next_sample)
        return SUCCESS

    def c_nvmlGpmSampleFree(self, sample: Any) -> int:
        self._gpm_samples.pop(_pointer_value(sample), None)
        return SUCCESS

    def c_nvmlGpmSampleGet(self, gpu: FakeGpu, sample: Any) -> int:
        i = self.gpus.index(gpu)
        self._gpm_ticks[i] = self._gpm_ticks.get(i, 0) + 1
        self._gpm_samples[_pointer_value(sample)] = (i, self._gpm_ticks[i])
        return SUCCESS

    def c_nvmlGpmMetricsGet(self, out: Any) -> int:
        get = _out(out)
        first = self._gpm_samples.get(_pointer_value(get.sample1))
        second = self._gpm_samples.get(_pointer_value(get.sample2))
        if first is None or second is None or first[0] != second[0] or second[1] <= first[1]:
            return pynvml.NVML_ERROR_INVALID_ARGUMENT
        gpu = self.gpus[first[0]]
        values = {
            pynvml.NVML_GPM_METRIC_SM_UTIL: gpu.sm_active,
            pynvml.NVML_GPM_METRIC_SM_OCCUPANCY: gpu.sm_occupancy,
        }
        for k in range(get.numMetrics):
            metric = get.metrics[k]
            if metric.metricId in gpu.gpm_unsupported or metric.metricId not in values:
                metric.nvmlReturn = NOT_SUPPORTED
            else:
                metric.nvmlReturn, metric.value = SUCCESS, values[metric.metricId]
        return SUCCESS


def install(monkeypatch: Any, lib: Any) -> None:
    """Make the real binding call ``lib`` (or, with ``None``, find no library at all)."""
    from gpubench.monitor import nvml

    nvml.shutdown()
    monkeypatch.setattr(pynvml, "nvmlLib", lib)
    monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
    if lib is None:

        def no_library(*args: Any, **kwargs: Any) -> Any:
            raise OSError("libnvidia-ml.so.1: cannot open shared object file")

        monkeypatch.setattr(pynvml, "CDLL", no_library)
