"""The memory answer: what one training process holds on a device, and how many fit.

Per process, from the best source a run recorded:

- ``nvml``: NVML's per-process device memory (CUDA context, runtime and torch's cache: what
  the GPU actually gives that process), split with torch's own peaks into *tensors*
  (``max_memory_allocated``), *allocator cache* (reserved minus allocated) and *context and
  runtime* (the rest);
- ``allocator``: torch's reserved peak alone, where NVML gave no per-process figure (the
  context is then missing: a floor, not the whole);
- ``rss``: on CPU slots, the process's resident memory, standing in for device memory.

Only runs that were not interleaved are used for per-process figures: an interleaved run
keeps every mode's processes alive together. Belief 5 and the per-batch figures come from
*fresh* processes only: the workers a pool mode starts for its measurement. Serial trains in
the long-lived parent, whose memory also holds what every mode that ran in it before left
behind (the FAQ plan's comparison runs threaded in it first) and, on a GPU, the CUDA context
it keeps for the result checks: its row is shown as the parent's, never used as a figure of
one training process. Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gpubench.faq.inputs import FaqInputs, device_ids
from gpubench.results import ModeResult, Results

TRAINING_MODES = ("serial", "multiprocess", "multi-gpu")  # one model trains one client at a time
PARENT_MODES = ("serial",)  # trains in the long-lived parent process, not a fresh one
HEADROOM = 0.10  # what the fit leaves free: allocator fragmentation, a larger last batch, others


@dataclass(frozen=True)
class ProcessMemory:
    mode: str
    device: str
    pid: str | None
    total_bytes: int
    source: str  # nvml / allocator / rss
    allocated_bytes: int | None = None
    reserved_bytes: int | None = None
    clients: int | None = None  # clients whose data this process holds
    batch_size: int | None = None

    @property
    def fresh(self) -> bool:
        """A worker started for this mode's measurement, not the long-lived parent."""
        return self.mode not in PARENT_MODES

    @property
    def context_bytes(self) -> int | None:
        """Outside torch's allocator: the CUDA context and runtime (NVML source only)."""
        if self.source != "nvml" or self.reserved_bytes is None:
            return None
        return max(self.total_bytes - self.reserved_bytes, 0)

    @property
    def cache_bytes(self) -> int | None:
        if self.reserved_bytes is None or self.allocated_bytes is None:
            return None
        return max(self.reserved_bytes - self.allocated_bytes, 0)


def _clients_per_worker(mode: ModeResult) -> dict[tuple[str, int], int]:
    rounds = [r for r in mode.rounds if not r.warmup and r.clients] or [
        r for r in mode.rounds if r.clients
    ]
    if not rounds:
        return {}
    out: dict[tuple[str, int], set[int]] = {}
    for c in rounds[0].clients:
        out.setdefault((c.device, c.worker), set()).add(c.client)
    return {k: len(v) for k, v in out.items()}


def processes(results: Results, modes: Sequence[str] = TRAINING_MODES) -> list[ProcessMemory]:
    """Every training process of ``results`` with its memory (see the module docstring)."""
    out = []
    cuda = any(d.startswith("cuda") for d in device_ids(results))
    batch = results.config.batch_size
    for mode in results.modes:
        if mode.name not in modes or not mode.ok:
            continue
        per_worker = _clients_per_worker(mode)
        nvml = {pid: b for s in mode.device_stats for pid, b in s.process_mem_peak_bytes.items()}
        for w in mode.worker_memory:
            pid = str(w.pid) if w.pid is not None else None
            clients = per_worker.get((w.device, w.worker))
            if mode.name == "serial":
                clients = int(results.config.clients or 0) or clients
            total, source = None, ""
            if pid is not None and pid in nvml:
                total, source = nvml[pid], "nvml" if cuda else "rss"
            elif cuda and w.max_reserved_bytes is not None:
                total, source = w.max_reserved_bytes, "allocator"
            elif not cuda and w.rss_bytes is not None:
                total, source = w.rss_bytes, "rss"
            if total is None:
                continue
            out.append(ProcessMemory(mode.name, w.device, pid, int(total), source,
                                     w.max_allocated_bytes, w.max_reserved_bytes, clients,
                                     batch if isinstance(batch, int) else None))
    return out


def measured_processes(inputs: FaqInputs) -> list[ProcessMemory]:
    """Training processes of the runs that were not interleaved (memory run, batch points)."""
    runs = [inputs.memory, *inputs.batch_points]
    seen: list[Results] = []
    out: list[ProcessMemory] = []
    for r in runs:
        if r is None or r.config.interleave or any(r is s for s in seen):
            continue
        seen.append(r)
        out.extend(processes(r))
    return out


def worker_processes(inputs: FaqInputs) -> list[ProcessMemory]:
    """What the memory belief is judged on: each fresh training process once.

    The memory run alone (the batch points repeat serial's process at other batch sizes, and
    counting them would weigh one process three times), and only its worker processes: the
    parent's serial row carries the history of the modes that ran in it before (module
    docstring). Empty when the runs have no fresh process.
    """
    run = inputs.memory
    if run is None or run.config.interleave:
        runs = [r for r in inputs.batch_points if not r.config.interleave][:1]
    else:
        runs = [run]
    return [p for r in runs for p in processes(r) if p.fresh]


def per_batch(procs: Sequence[ProcessMemory]) -> dict[int, list[ProcessMemory]]:
    """Fresh processes by batch size: the per-batch memory figures (the parent's rows left
    out, module docstring)."""
    out: dict[int, list[ProcessMemory]] = {}
    for p in procs:
        if p.fresh and p.batch_size:
            out.setdefault(p.batch_size, []).append(p)
    return dict(sorted(out.items()))


def per_client_bytes(procs: Sequence[ProcessMemory]) -> float | None:
    """Tensor memory one more client's data costs: the allocator peaks of two fresh processes
    of the same batch that hold different numbers of clients (the parent's peak also holds
    what earlier modes left, so it is not one of them)."""
    known = [p for p in procs if p.fresh and p.allocated_bytes is not None and p.clients]
    for a in known:
        for b in known:
            if a.batch_size == b.batch_size and a.clients and b.clients and a.clients > b.clients:
                assert a.allocated_bytes is not None and b.allocated_bytes is not None
                diff = a.allocated_bytes - b.allocated_bytes
                if diff > 0:
                    return diff / (a.clients - b.clients)
    return None


def median(values: Sequence[float | None]) -> float | None:
    """The median of the known values (None when none is known)."""
    known = sorted(v for v in values if v is not None)
    if not known:
        return None
    mid = len(known) // 2
    return known[mid] if len(known) % 2 else (known[mid - 1] + known[mid]) / 2


def median_total(procs: Sequence[ProcessMemory]) -> float | None:
    return median([p.total_bytes for p in procs])


@dataclass(frozen=True)
class Fit:
    device: str
    total_bytes: int  # the memory planned against: free before the run, else the total
    per_process_bytes: float
    processes: int  # that fit with HEADROOM left free
    num_gpus: float  # Ray/Flower client_resources for the run's clients at once on these GPUs
    fill_first: float  # the smallest fraction that still fits: Ray packs GPU 0 with it first


def fits(inputs: FaqInputs, per_process: float | None) -> list[Fit]:
    """Per GPU of the runs: how many such processes fit in its memory free before the run
    (its total where that was not recorded), and the ``num_gpus`` that spreads."""
    if per_process is None or per_process <= 0:
        return []
    entries: dict[str, int] = {}
    for r in inputs.runs:
        # What was free before the run (other users' jobs taken off), where it was recorded.
        free = ((r.memory_plan or {}).get("estimate") or {}).get("device_free") or {}
        for d in r.devices:
            total = d.get("memory_total_bytes") if isinstance(d, dict) else None
            ident = d.get("id") if isinstance(d, dict) else None
            if isinstance(total, int) and total > 0 and isinstance(ident, str):
                room = free.get(ident)
                entries.setdefault(ident, min(total, room) if isinstance(room, int) else total)
    if not entries:
        return []
    run = inputs.comparison or inputs.runs[0]
    clients = int(run.config.clients or 1)
    k = len(entries)
    out = []
    for device, total in sorted(entries.items()):
        n = int(total * (1 - HEADROOM) // per_process)
        if n < 1:
            out.append(Fit(device, total, per_process, 0, 1.0, 1.0))
            continue
        smallest = math.ceil(100 / n) / 100  # two decimals, rounded up: never more than n
        spread = math.ceil(100 * k / clients) / 100 if clients > k else 1.0
        out.append(Fit(device, total, per_process, n, min(max(smallest, spread), 1.0), smallest))
    return out
