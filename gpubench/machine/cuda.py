"""The thin CUDA part: which GPUs torch sees, binding a worker to one, synchronising before a
timestamp, and the caching allocator's memory statistics.

Every function here is a no-op (or returns nothing) on a CPU device string, so callers need not
ask which kind of device they run on. torch is imported inside the functions: importing this
module costs nothing on a machine that only reads results.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# A worker bound to one GPU sees it alone, as its device 0.
BOUND_TORCH_DEVICE = "cuda:0"


@dataclass(frozen=True)
class GpuFacts:
    """What torch reports about one visible GPU (index as this process sees it)."""

    index: int
    name: str
    uuid: str | None  # "GPU-..." (a MIG instance: "MIG-...") as nvidia-smi spells it
    pci_bus_id: str | None
    memory_total_bytes: int
    # What CUDA_VISIBLE_DEVICES must say for a worker to see exactly this GPU; None when it
    # cannot be told safely (the worker then uses the index).
    visible_as: str | None


def visible_gpus() -> tuple[GpuFacts, ...]:
    """The GPUs torch can use in this process; () without CUDA."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return ()
    if not torch.cuda.is_available():
        return ()
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
    has_visible = "CUDA_VISIBLE_DEVICES" in os.environ
    found = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        entry = visible[i] if has_visible and i < len(visible) else ""
        uuid = getattr(props, "uuid", None)
        uuid_text = uuid_name(str(uuid), props.name, entry) if uuid is not None else None
        pci = None
        dom, bus, dev = (getattr(props, a, None) for a in ("pci_domain_id", "pci_bus_id", "pci_device_id"))
        if dom is not None and bus is not None and dev is not None:
            pci = f"{dom:08X}:{bus:02X}:{dev:02X}.0"
        if uuid_text:
            visible_as = uuid_text
        elif entry:
            visible_as = entry
        else:
            visible_as = None
        found.append(
            GpuFacts(
                index=i,
                name=props.name,
                uuid=uuid_text,
                pci_bus_id=pci,
                memory_total_bytes=int(props.total_memory),
                visible_as=visible_as,
            )
        )
    return tuple(found)


def uuid_name(uuid: str, name: str, visible_entry: str = "") -> str:
    """A device's UUID as nvidia-smi and CUDA_VISIBLE_DEVICES spell it: ``GPU-...`` for a GPU,
    ``MIG-...`` for a MIG instance (its name says "MIG", or the user named it so)."""
    if uuid.startswith(("GPU-", "MIG-")):
        return uuid
    mig = visible_entry.startswith("MIG-") or " MIG " in f" {name} "
    return f"{'MIG' if mig else 'GPU'}-{uuid}"


def binding_environment(index: int, visible_as: str | None) -> dict[str, str]:
    """Environment that makes a worker see one GPU only; set before CUDA initialises."""
    return {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": visible_as or str(index),
    }


def synchronize(torch_device: str) -> None:
    """Wait for queued kernels so that a timestamp means what it says."""
    if torch_device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(torch_device)


def initialised() -> bool:
    """Whether this process has a CUDA context (torch initialised CUDA)."""
    import torch

    return bool(torch.cuda.is_initialized())


def event_recorder(torch_device: str) -> Callable[[], Any] | None:
    """A function that records a timing CUDA event on the current stream and returns it (its
    ``elapsed_time(later)`` in ms once both are complete); None on a CPU device."""
    if not torch_device.startswith("cuda"):
        return None
    import torch

    def record() -> Any:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    return record


def release_device_memory(torch_devices: Iterable[str]) -> None:
    """Collect what nothing refers to any more (a failed client's model and activations sit
    in reference cycles of its frames until then), then hand the CUDA caching allocator's
    unused blocks back to the driver, so that other processes on the GPU (the process modes'
    workers) find them free. Call it after the ``except`` block that caught a failure: while
    the traceback lives, its frames hold what would be released."""
    gc.collect()
    if any(d.startswith("cuda") for d in torch_devices):
        import torch

        torch.cuda.empty_cache()  # a no-op before CUDA initialised


def free_memory(torch_device: str) -> int | None:
    """Bytes this process could allocate on its GPU now: the driver's free memory (what other
    processes and modes leave) plus what torch's allocator holds here unused; None on CPU."""
    if not torch_device.startswith("cuda"):
        return None
    import torch

    free = int(torch.cuda.mem_get_info(torch.device(torch_device))[0])
    cached = torch.cuda.memory_reserved(torch_device) - torch.cuda.memory_allocated(torch_device)
    return free + max(0, int(cached))


def reset_peak_memory(torch_device: str) -> None:
    """Start the allocator's peak statistics again (nothing to do before CUDA initialised)."""
    if torch_device.startswith("cuda"):
        import torch

        if torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats(torch_device)


def memory_in_use(torch_device: str) -> tuple[int, int]:
    """(allocated, reserved) bytes by torch's CUDA allocator in this process now; (0, 0) on
    CPU or before CUDA initialised."""
    if torch_device.startswith("cuda"):
        import torch

        if torch.cuda.is_initialized():
            return (int(torch.cuda.memory_allocated(torch_device)),
                    int(torch.cuda.memory_reserved(torch_device)))
    return 0, 0


def peak_memory(torch_device: str) -> tuple[int | None, int | None]:
    """(max allocated, max reserved) bytes by torch's CUDA allocator; (None, None) on CPU."""
    if torch_device.startswith("cuda"):
        import torch

        return (
            int(torch.cuda.max_memory_allocated(torch_device)),
            int(torch.cuda.max_memory_reserved(torch_device)),
        )
    return None, None
