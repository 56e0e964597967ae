"""The sampler's NVML backend: every CUDA device of the run, through the facade in
:mod:`gpubench.monitor.nvml`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gpubench.machine.devices import Device
from gpubench.monitor.nvml import open_gpus
from gpubench.monitor.other_load import OwnProcesses
from gpubench.monitor.probe import Reading

NVML_FIELDS = {
    "util": "kernel-active time: % of the sample period in which any kernel ran "
    "(nvmlDeviceGetUtilizationRates .gpu; not how much of the GPU was used)",
    "util_samples": "the driver's own timestamped kernel-active samples "
    "(nvmlDeviceGetSamples, NVML_GPU_UTILIZATION_SAMPLES), each attributed to the span "
    "that ran at the middle of its window",
    "mem": "device memory used, bytes (nvmlDeviceGetMemoryInfo v2; v1 where v2 is unsupported)",
    "mem_reserved": "device memory reserved by the driver, bytes (nvmlDeviceGetMemoryInfo v2)",
    "process_mem": "GPU memory used by each watched pid, bytes "
    "(nvmlDeviceGetComputeRunningProcesses: CUDA context + cache + tensors)",
    "power_w": "board power draw, W (nvmlDeviceGetPowerUsage)",
    "energy_j": "energy counter, J (nvmlDeviceGetTotalEnergyConsumption; use differences)",
    "other_util": "other programs' load: the summed SM utilisation of the processes on the GPU "
    "outside the run's process tree (nvmlDeviceGetProcessUtilization); null where the GPU "
    "does not give per-process utilisation",
    "other_processes": "processes on the GPU outside the run's process tree "
    "(nvmlDeviceGetComputeRunningProcesses): pid, command name, SM share or null",
    "sm_active": "% of SMs busy between two samples (GPM NVML_GPM_METRIC_SM_UTIL; Hopper and "
    "later)",
    "sm_occupancy": "% of the SMs' warp slots in use between two samples "
    "(GPM NVML_GPM_METRIC_SM_OCCUPANCY; Hopper and later)",
}


class NvmlProbe:
    """Samples every CUDA device through NVML; other devices read as all ``None``."""

    backend = "nvml"
    fields = NVML_FIELDS
    mem_is_process_sum = False

    def __init__(self, devices: Sequence[Device], own: OwnProcesses | None = None) -> None:
        self.gpus, self.missing = open_gpus(devices)
        self._ids = [d.id for d in devices]
        self._own = own or OwnProcesses()

    def read(self, pids_by_device: Mapping[str, Sequence[int]]) -> dict[str, Reading]:
        out = {d: Reading() for d in self._ids}
        for pids in pids_by_device.values():
            self._own.add(pids)
        own = self._own.pids()
        for dev_id, gpu in self.gpus.items():
            out[dev_id] = gpu.read(pids_by_device.get(dev_id, ()), own)
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
