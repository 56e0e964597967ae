"""The one NVML facade: the only module of gpubench that imports ``pynvml``.

``pynvml`` is the official binding (package ``nvidia-ml-py``). Everything here follows three
rules, after nvitop's ``api/libnvml.py``:

- initialisation is lazy and locked: the first query loads the library, once per process;
  a missing library or driver raises :class:`NvmlUnavailable` with a hint, never a bare
  ``NVMLError``;
- a query never raises for a field the GPU, the driver or our permissions do not give
  (``NotSupported``, ``NoPermission``, ``FunctionNotFound``, …): the value is ``None``, and the
  first such error per (device, field) is logged; a field that is not supported is not asked
  again;
- ``GpuIsLost`` marks that GPU lost: every later value is ``None`` and sampling goes on.

Torch devices are mapped to NVML handles by UUID (or PCI bus id), never by index: CUDA's order
(``CUDA_VISIBLE_DEVICES``, ``CUDA_DEVICE_ORDER``) and NVML's (PCI bus order, every GPU) differ.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from gpubench.machine.devices import Device
from gpubench.monitor.probe import LogOnce, Reading

try:  # the binding is a dependency, but a broken install must not break CPU runs
    import pynvml
except ImportError:  # pragma: no cover - exercised through _import_error
    pynvml = None

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install the NVIDIA driver (it ships libnvidia-ml.so.1) and the Python binding "
    "`pip install nvidia-ml-py`; in a container, run it with the GPU exposed "
    "(e.g. `docker run --gpus all`)"
)

# Errors after which asking again is pointless: the field is switched off for that GPU.
_PERMANENT_ERRORS: tuple[int, ...] = ()
if pynvml is not None:
    _PERMANENT_ERRORS = (
        pynvml.NVML_ERROR_NOT_SUPPORTED,
        pynvml.NVML_ERROR_NO_PERMISSION,
        pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
        pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH,
    )


# GPM (Hopper and later): Reading field (without "_pct") -> pynvml metric id name.
GPM_METRICS = {
    "sm_active": "NVML_GPM_METRIC_SM_UTIL",
    "sm_occupancy": "NVML_GPM_METRIC_SM_OCCUPANCY",
}
GPM_UNSUPPORTED = "GPM not supported by this GPU (Hopper and later)"
# nvmlValueType_t -> the c_nvmlValue_t member holding the value.
_VALUE_FIELDS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used in this process (no binding, no library, no driver)."""

    def __init__(self, reason: str, hint: str = INSTALL_HINT) -> None:
        super().__init__(f"NVML not available: {reason} (hint: {hint})")
        self.reason = reason
        self.hint = hint


_lock = threading.Lock()
_initialised = False


def init() -> None:
    """Load and initialise NVML once per process; raises :class:`NvmlUnavailable`."""
    global _initialised
    if _initialised:
        return
    with _lock:
        if _initialised:
            return
        if pynvml is None:
            raise NvmlUnavailable("the Python binding `pynvml` (nvidia-ml-py) is not installed")
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError_LibraryNotFound:
            raise NvmlUnavailable("no NVML library (libnvidia-ml.so.1) was found") from None
        except pynvml.NVMLError_DriverNotLoaded:
            raise NvmlUnavailable("the NVIDIA driver is not loaded") from None
        except pynvml.NVMLError as exc:
            raise NvmlUnavailable(f"nvmlInit failed: {exc}") from None
        _initialised = True


def shutdown() -> None:
    """Undo :func:`init` (tests use it; a run leaves NVML initialised until exit)."""
    global _initialised
    with _lock:
        if not _initialised:
            return
        _initialised = False
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError as exc:  # pragma: no cover - nothing to do about it
            log.debug("nvmlShutdown failed: %s", exc)


# --- one GPU ---------------------------------------------------------------------------------


class NvmlGpu:
    """One torch device's GPU, as NVML sees it; :meth:`read` never raises an NVML error."""

    def __init__(self, device: Device, handle: Any, once: LogOnce) -> None:
        self.device = device
        self.handle = handle
        self.lost = False
        self.off: dict[str, str] = {}  # field -> why it is not measured
        self.mem_total_bytes: int | None = None
        # NVML listed processes while we watched some, and never one of ours: pid namespaces
        # differ (a container), so per-process memory cannot be matched here.
        self.matched_pids = False
        self.unmatched_pids = False
        self._once = once
        self._memory_v2 = True
        self._processes_v3 = True
        self._gpm: tuple[Any, Any] | None = None
        self._gpm_fresh = False
        self._setup_gpm()
        # The driver's newest utilisation sample seen so far (its CPU timestamp, us); samples
        # from before the GPU was opened are not this run's.
        self._sample_ts = 0
        self._util_samples(None)
        self._process_ts = 0  # the newest per-process utilisation sample seen (us)

    # Every query goes through here: an NVMLError becomes None.
    def _query(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.lost or name in self.off:
            return None
        try:
            return fn(*args, **kwargs)
        except (pynvml.NVMLError, pynvml.NVMLLibraryMismatchError) as exc:
            self._failed(name, exc)
        return None

    def _failed(self, name: str, exc: Exception) -> None:
        if isinstance(exc, pynvml.NVMLError_GpuIsLost):
            self.lost = True
            message = "GPU is lost; its values are null from now on"
            self._once(self.device.id, "device", message, logging.WARNING)
            return
        if not isinstance(exc, pynvml.NVMLError):  # NVMLLibraryMismatchError
            self.off[name] = "function not found in this NVML library"
        elif exc.value in _PERMANENT_ERRORS:
            self.off[name] = str(exc)
        self._once(self.device.id, name, f"{exc} (recorded as null)")

    def _gpm_call(self, fn: Any, *args: Any) -> Any:
        """A GPM call both metrics need; once it fails for good, both are off."""
        got = self._query("gpm", fn, *args)
        if "gpm" in self.off:
            why = self.off.pop("gpm")
            self.off.update({n: why for n in GPM_METRICS if n not in self.off})
            self.close()
        return got

    def _setup_gpm(self) -> None:
        support = self._gpm_call(pynvml.nvmlGpmQueryDeviceSupport, self.handle)
        if support is None or not support.isSupportedDevice:
            why = GPM_UNSUPPORTED if support is not None else "the GPM support query failed"
            self.off.update({n: why for n in GPM_METRICS if n not in self.off})
            return
        first = self._gpm_call(pynvml.nvmlGpmSampleAlloc)
        second = self._gpm_call(pynvml.nvmlGpmSampleAlloc) if first is not None else None
        if first is not None and second is not None:
            self._gpm = (first, second)
        else:
            self.off.update({n: "no GPM sample buffers" for n in GPM_METRICS if n not in self.off})

    def close(self) -> None:
        if self._gpm is not None:
            for sample in self._gpm:
                try:
                    pynvml.nvmlGpmSampleFree(sample)
                except pynvml.NVMLError:  # pragma: no cover - freeing at exit
                    pass
            self._gpm = None

    def _memory(self, r: Reading) -> None:
        if self._memory_v2:
            try:
                mem = pynvml.nvmlDeviceGetMemoryInfo(self.handle, version=pynvml.nvmlMemory_v2)
            except pynvml.NVMLError as exc:
                if exc.value not in _PERMANENT_ERRORS:
                    self._failed("memory", exc)
                    return
                self._memory_v2 = False  # older driver: v1 has no "reserved"
                log.debug("nvmlDeviceGetMemoryInfo v2 on %s: %s; using v1", self.device.id, exc)
            else:
                self.mem_total_bytes = int(mem.total)
                r.mem_bytes, r.mem_reserved_bytes = int(mem.used), int(mem.reserved)
                return
        mem = self._query("memory", pynvml.nvmlDeviceGetMemoryInfo, self.handle)
        if mem is not None:
            self.mem_total_bytes = int(mem.total)
            r.mem_bytes = int(mem.used)

    def _processes(self, r: Reading, pids: Iterable[int], own: set[int] | None) -> None:
        """Memory of the watched pids; with ``own`` (the run's process tree), the processes
        outside it and their load (:meth:`_foreign`)."""
        wanted = set(pids)
        if not wanted and own is None:
            return
        fn = (
            pynvml.nvmlDeviceGetComputeRunningProcesses
            if self._processes_v3
            else pynvml.nvmlDeviceGetComputeRunningProcesses_v2
        )
        if self.lost or "process_mem" in self.off:
            return
        try:
            procs = fn(self.handle)
        except pynvml.NVMLLibraryMismatchError:
            self._processes_v3 = False  # driver older than the binding
            procs = self._query(
                "process_mem", pynvml.nvmlDeviceGetComputeRunningProcesses_v2, self.handle
            )
        except pynvml.NVMLError as exc:
            self._failed("process_mem", exc)
            procs = None
        for p in procs or ():
            if p.pid in wanted and p.usedGpuMemory is not None:
                r.process_mem_bytes[int(p.pid)] = int(p.usedGpuMemory)
        if r.process_mem_bytes:
            self.matched_pids = True
        elif procs and wanted:
            self.unmatched_pids = True
        # Own and other pids are told apart only once one of ours was matched (in another pid
        # namespace, every process would look like another program's).
        if own is not None and procs is not None and (self.matched_pids or not procs):
            self._foreign(r, {int(p.pid): p.usedGpuMemory for p in procs if p.pid not in own})

    def _foreign(self, r: Reading, foreign: dict[int, int | None]) -> None:
        """Other programs on this GPU: each one's SM share since the previous read
        (``nvmlDeviceGetProcessUtilization``) where the GPU gives it, their sum as the device's
        other load; where it does not, they are named with a null share and the load is null."""
        shares = self._process_util(set(foreign)) if foreign else {}
        if shares is None:
            r.other_util_pct = None
        else:
            r.other_util_pct = float(min(100.0, sum(shares.values())))
        for pid in sorted(foreign, key=lambda p: -(shares or {}).get(p, 0.0)):
            share = None if shares is None else shares.get(pid, 0.0)
            r.other_processes.append((pid, _process_name(pid), share))

    def _process_util(self, pids: set[int]) -> dict[int, float] | None:
        """Mean SM utilisation per pid over the driver's samples newer than the last seen."""
        if self.lost or "process_util" in self.off:
            return None
        try:
            samples = pynvml.nvmlDeviceGetProcessUtilization(self.handle, self._process_ts)
        except pynvml.NVMLError as exc:
            if exc.value in (pynvml.NVML_ERROR_NOT_FOUND, pynvml.NVML_SUCCESS):
                return {}  # no process ran a kernel since the last sample
            self._failed("process_util", exc)
            return None
        except pynvml.NVMLLibraryMismatchError as exc:
            self._failed("process_util", exc)
            return None
        per: dict[int, list[float]] = {}
        for s in samples:
            self._process_ts = max(self._process_ts, int(s.timeStamp))
            if int(s.pid) in pids:
                per.setdefault(int(s.pid), []).append(float(s.smUtil))
        return {pid: sum(v) / len(v) for pid, v in per.items()}

    def _gpm_metrics(self, r: Reading) -> None:
        wanted = [name for name in GPM_METRICS if name not in self.off]
        if self._gpm is None or self.lost or not wanted:
            return
        previous, current = self._gpm
        if self._gpm_call(pynvml.nvmlGpmSampleGet, self.handle, current) is None:
            self._gpm_fresh = False
            return
        if self._gpm_fresh:
            get = pynvml.c_nvmlGpmMetricsGet_t()
            get.version = pynvml.NVML_GPM_METRICS_GET_VERSION
            get.numMetrics = len(wanted)
            get.sample1, get.sample2 = previous, current
            for k, name in enumerate(wanted):
                get.metrics[k].metricId = getattr(pynvml, GPM_METRICS[name])
            got = self._gpm_call(pynvml.nvmlGpmMetricsGet, get)
            for k, name in enumerate(wanted if got is not None else ()):
                metric = got.metrics[k]
                if metric.nvmlReturn == pynvml.NVML_SUCCESS:
                    setattr(r, f"{name}_pct", float(metric.value))
                else:  # a metric this GPU does not give: the other goes on
                    self._failed(name, pynvml.NVMLError(metric.nvmlReturn))
        if self._gpm is not None:
            self._gpm = (current, previous)  # the newest sample is the next "previous"
            self._gpm_fresh = True

    def _util_samples(self, r: Reading | None) -> None:
        """The driver's timestamped utilisation samples since the last one seen (``r`` None:
        only remember the newest, as when the GPU is opened)."""
        if self.lost or "util_samples" in self.off:
            return
        try:
            kind, samples = pynvml.nvmlDeviceGetSamples(
                self.handle, pynvml.NVML_GPU_UTILIZATION_SAMPLES, self._sample_ts
            )
        except pynvml.NVMLError as exc:
            if exc.value != pynvml.NVML_ERROR_NOT_FOUND:  # NOT_FOUND: nothing new yet
                self._failed("util_samples", exc)
            return
        except pynvml.NVMLLibraryMismatchError as exc:
            self._failed("util_samples", exc)
            return
        field = _VALUE_FIELDS.get(kind, "uiVal")
        for s in sorted(samples, key=lambda s: s.timeStamp):
            ts = int(s.timeStamp)
            if ts <= self._sample_ts:
                continue
            if r is not None and self._sample_ts:
                value = float(getattr(s.sampleValue, field))
                r.util_samples.append((self._sample_ts / 1e6, ts / 1e6, value))
            self._sample_ts = ts

    def read(self, pids: Iterable[int] = (), own: set[int] | None = None) -> Reading:
        """One sample; ``own``: the run's process tree, to tell other programs apart."""
        r = Reading()
        if self.lost:
            return r
        util = self._query("util", pynvml.nvmlDeviceGetUtilizationRates, self.handle)
        if util is not None:
            r.util_pct = float(util.gpu)
        self._memory(r)
        power_mw = self._query("power", pynvml.nvmlDeviceGetPowerUsage, self.handle)
        if power_mw is not None:
            r.power_w = power_mw / 1000.0
        energy_mj = self._query("energy", pynvml.nvmlDeviceGetTotalEnergyConsumption, self.handle)
        if energy_mj is not None:
            r.energy_j = energy_mj / 1000.0
        self._processes(r, pids, own)
        self._gpm_metrics(r)
        self._util_samples(r)
        return r


def _process_name(pid: int) -> str:
    """A pid's command name, or ``?`` where it is not ours to read (another user, another
    pid namespace)."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip() or "?"
    except OSError:
        return "?"


# --- mapping torch devices to NVML handles -----------------------------------------------------


def _visible_entries() -> list[str] | None:
    if "CUDA_VISIBLE_DEVICES" not in os.environ:
        return None
    return [v.strip() for v in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if v.strip()]


def handle_for(device: Device) -> Any:
    """The NVML handle of a torch CUDA device: by UUID, else PCI bus id, else what
    ``CUDA_VISIBLE_DEVICES`` says. Raises ``LookupError`` when no safe mapping exists.
    """
    init()
    if device.uuid:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(device.uuid)
        except pynvml.NVMLError as exc:
            log.debug("no NVML handle for UUID %s: %s", device.uuid, exc)
    if device.pci_bus_id:
        try:
            return pynvml.nvmlDeviceGetHandleByPciBusId(device.pci_bus_id)
        except pynvml.NVMLError as exc:
            log.debug("no NVML handle for PCI bus id %s: %s", device.pci_bus_id, exc)
    visible = _visible_entries()
    entry = None
    if visible is not None and device.index < len(visible):
        entry = visible[device.index]
    try:
        if entry is not None and not entry.isdigit():  # GPU-… / MIG-… (a prefix is allowed)
            return _handle_by_uuid_prefix(entry)
        index = int(entry) if entry is not None else device.index
        # A CUDA index equals NVML's only in PCI bus order (or with a single GPU).
        if os.environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID" or pynvml.nvmlDeviceGetCount() == 1:
            return pynvml.nvmlDeviceGetHandleByIndex(index)
    except pynvml.NVMLError as exc:
        raise LookupError(f"{device.id}: no NVML handle ({exc})") from None
    raise LookupError(
        f"{device.id}: torch gave no UUID or PCI bus id, and CUDA's device order is not "
        "PCI bus order (set CUDA_DEVICE_ORDER=PCI_BUS_ID): not sampled"
    )


def _handle_by_uuid_prefix(text: str) -> Any:
    try:
        return pynvml.nvmlDeviceGetHandleByUUID(text)
    except pynvml.NVMLError:
        pass
    for i in range(pynvml.nvmlDeviceGetCount()):  # CUDA accepts unique UUID prefixes
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        if pynvml.nvmlDeviceGetUUID(h).startswith(text):
            return h
    raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)


def open_gpus(devices: Sequence[Device]) -> tuple[dict[str, NvmlGpu], dict[str, str]]:
    """NVML views of the CUDA devices among ``devices``, and why the others have none."""
    init()
    once = LogOnce("NVML", log)
    gpus: dict[str, NvmlGpu] = {}
    missing: dict[str, str] = {}
    for d in devices:
        if not d.is_cuda:
            continue
        try:
            gpus[d.id] = NvmlGpu(d, handle_for(d), once)
        except LookupError as exc:
            missing[d.id] = str(exc)
            log.info("%s", exc)
    return gpus, missing


# --- environment -----------------------------------------------------------------------------

_COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}


def _maybe(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except (pynvml.NVMLError, pynvml.NVMLLibraryMismatchError):
        return None


def environment_info() -> dict[str, Any]:
    """Driver, NVML and CUDA driver versions and every GPU NVML sees; ``{"nvml": note}``
    when NVML is not available. Missing values are ``None``."""
    try:
        init()
    except NvmlUnavailable as exc:
        return {"nvml_note": str(exc)}
    cuda = _maybe(pynvml.nvmlSystemGetCudaDriverVersion)
    info: dict[str, Any] = {
        "nvidia_driver_version": _maybe(pynvml.nvmlSystemGetDriverVersion),
        "nvml_version": _maybe(pynvml.nvmlSystemGetNVMLVersion),
        "cuda_driver_version": f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else None,
    }
    gpus = []
    for i in range(_maybe(pynvml.nvmlDeviceGetCount) or 0):
        h = _maybe(pynvml.nvmlDeviceGetHandleByIndex, i)
        if h is None:
            continue
        mig = _maybe(pynvml.nvmlDeviceGetMigMode, h)
        mode = _maybe(pynvml.nvmlDeviceGetComputeMode, h)
        pci = _maybe(pynvml.nvmlDeviceGetPciInfo, h)
        gpus.append(
            {
                "nvml_index": i,
                "name": _maybe(pynvml.nvmlDeviceGetName, h),
                "uuid": _maybe(pynvml.nvmlDeviceGetUUID, h),
                "pci_bus_id": pci.busId if pci is not None else None,
                "compute_mode": _COMPUTE_MODES.get(mode, mode) if mode is not None else None,
                "mig_mode": bool(mig[0]) if mig is not None else None,
            }
        )
    info["nvml_gpus"] = gpus
    return info


# --- MPS ---------------------------------------------------------------------------------------


def compute_mode(device: Device) -> str | None:
    """NVML's compute mode of ``device``'s GPU (``default``, ``exclusive_process``, ...);
    None when NVML cannot tell."""
    try:
        handle = handle_for(device)
    except (NvmlUnavailable, LookupError):
        return None
    mode = _maybe(pynvml.nvmlDeviceGetComputeMode, handle)
    return None if mode is None else str(_COMPUTE_MODES.get(mode, mode))


def free_memory(device: Device) -> int | None:
    """Bytes of ``device``'s GPU memory free now (what other programs leave); None when NVML
    cannot tell."""
    try:
        handle = handle_for(device)
    except (NvmlUnavailable, LookupError):
        return None
    mem = _maybe(pynvml.nvmlDeviceGetMemoryInfo, handle)
    return None if mem is None else int(mem.free)


def process_kinds(device: Device) -> dict[int, str]:
    """Pid -> ``"mps"`` (an MPS client) or ``"compute"`` (a CUDA context of its own,
    time-sliced) for the processes NVML lists on ``device``'s GPU. Raises ``LookupError``
    when NVML cannot tell (no NVML, no handle, an unsupported query)."""
    try:
        handle = handle_for(device)
        plain = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
        mps = pynvml.nvmlDeviceGetMPSComputeRunningProcesses(handle)
    except (NvmlUnavailable, pynvml.NVMLError, pynvml.NVMLLibraryMismatchError) as exc:
        raise LookupError(f"{device.id}: NVML cannot list its processes ({exc})") from None
    kinds = {int(p.pid): "compute" for p in plain}
    kinds.update({int(p.pid): "mps" for p in mps})
    return kinds
