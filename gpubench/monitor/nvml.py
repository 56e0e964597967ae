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
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gpubench.devices import Device
from gpubench.monitor.probe import Reading

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


def unavailable_reason() -> str | None:
    """``None`` when NVML works here, else why not (with the hint)."""
    try:
        init()
    except NvmlUnavailable as exc:
        return str(exc)
    return None


# --- one GPU ---------------------------------------------------------------------------------


class _Once:
    """Log each (device, field) problem once."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def __call__(self, device: str, name: str, message: str, level: int = logging.INFO) -> None:
        # INFO: a missing field is expected on many GPUs and is in the results' note anyway.
        if (device, name) not in self._seen:
            self._seen.add((device, name))
            log.log(level, "NVML %s on %s: %s", name, device, message)


class NvmlGpu:
    """One torch device's GPU, as NVML sees it; :meth:`read` never raises an NVML error."""

    def __init__(self, device: Device, handle: Any, once: _Once) -> None:
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
            self._once(
                self.device.id,
                "device",
                "GPU is lost; its values are null from now on",
                logging.WARNING,
            )
            return
        if not isinstance(exc, pynvml.NVMLError):  # NVMLLibraryMismatchError
            self.off[name] = "function not found in this NVML library"
        elif exc.value in _PERMANENT_ERRORS:
            self.off[name] = str(exc)
        self._once(self.device.id, name, f"{exc} (recorded as null)")

    def _setup_gpm(self) -> None:
        support = self._query("sm_active", pynvml.nvmlGpmQueryDeviceSupport, self.handle)
        if support is None:
            return
        if not support.isSupportedDevice:
            self.off["sm_active"] = "GPM not supported by this GPU (Hopper and later)"
            return
        first = self._query("sm_active", pynvml.nvmlGpmSampleAlloc)
        second = self._query("sm_active", pynvml.nvmlGpmSampleAlloc)
        if first is not None and second is not None:
            self._gpm = (first, second)

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

    def _processes(self, r: Reading, pids: Iterable[int]) -> None:
        wanted = set(pids)
        if not wanted:
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
        elif procs:
            self.unmatched_pids = True

    def _sm_active(self, r: Reading) -> None:
        if self._gpm is None or self.lost:
            return
        previous, current = self._gpm
        if self._query("sm_active", pynvml.nvmlGpmSampleGet, self.handle, current) is None:
            self._gpm_fresh = False
            return
        if self._gpm_fresh:
            get = pynvml.c_nvmlGpmMetricsGet_t()
            get.version = pynvml.NVML_GPM_METRICS_GET_VERSION
            get.numMetrics = 1
            get.sample1, get.sample2 = previous, current
            get.metrics[0].metricId = pynvml.NVML_GPM_METRIC_SM_UTIL
            got = self._query("sm_active", pynvml.nvmlGpmMetricsGet, get)
            if got is not None and got.metrics[0].nvmlReturn == pynvml.NVML_SUCCESS:
                r.sm_active_pct = float(got.metrics[0].value)
        self._gpm = (current, previous)  # the newest sample becomes the next "previous"
        self._gpm_fresh = True

    def read(self, pids: Iterable[int] = ()) -> Reading:
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
        self._processes(r, pids)
        self._sm_active(r)
        return r


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
    once = _Once()
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


# --- the sampler's backend ---------------------------------------------------------------------

NVML_FIELDS = {
    "util": "kernel-active time: % of the sample period in which any kernel ran "
    "(nvmlDeviceGetUtilizationRates .gpu; not how much of the GPU was used)",
    "mem": "device memory used, bytes (nvmlDeviceGetMemoryInfo v2; v1 where v2 is unsupported)",
    "mem_reserved": "device memory reserved by the driver, bytes (nvmlDeviceGetMemoryInfo v2)",
    "process_mem": "GPU memory used by each watched pid, bytes "
    "(nvmlDeviceGetComputeRunningProcesses: CUDA context + cache + tensors)",
    "power_w": "board power draw, W (nvmlDeviceGetPowerUsage)",
    "energy_j": "energy counter, J (nvmlDeviceGetTotalEnergyConsumption; use differences)",
    "sm_active": "% of SMs busy (GPM NVML_GPM_METRIC_SM_UTIL; Hopper and later)",
}


class NvmlProbe:
    """Samples every CUDA device through NVML; other devices read as all ``None``."""

    backend = "nvml"
    fields = NVML_FIELDS

    def __init__(self, devices: Sequence[Device]) -> None:
        self.gpus, self.missing = open_gpus(devices)
        self._ids = [d.id for d in devices]

    def read(self, pids_by_device: Mapping[str, Sequence[int]]) -> dict[str, Reading]:
        out = {d: Reading() for d in self._ids}
        for dev_id, gpu in self.gpus.items():
            out[dev_id] = gpu.read(pids_by_device.get(dev_id, ()))
        return out

    def notes(self) -> list[str]:
        notes = [f"{dev}: not sampled ({why})" for dev, why in self.missing.items()]
        for dev_id, gpu in self.gpus.items():
            if gpu.lost:
                notes.append(f"{dev_id}: GPU lost during the run; later samples are null")
            if gpu.unmatched_pids and not gpu.matched_pids:
                notes.append(
                    f"{dev_id}: NVML listed processes but none with a watched pid (another pid "
                    "namespace, e.g. a container?): per-process memory unknown there"
                )
            for name, why in sorted(gpu.off.items()):
                notes.append(f"{dev_id}: {name} null ({why})")
        return notes

    def close(self) -> None:
        for gpu in self.gpus.values():
            gpu.close()
