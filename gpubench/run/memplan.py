"""The memory plan: each process's and the host's peak memory, estimated before a run.

From what the parent knows before any worker starts (the model's state size, the bytes of a
sample, the activations one sample leaves for backward, measured in the probe step, and the
workers every mode starts) it adds up, per process, what a round holds at its peak:

- ``base``: the interpreter with torch and the case loaded (the parent's resident memory
  before the run, less the model it holds; a worker loads the same);
- ``model``: a replica's state, its gradients and momentum, the update sink's buffers;
- ``data``: the client data kept (``--data-budget``, or every client's), plus one client
  made on demand;
- ``activations``: one batch's, what autograd saves for backward and as much again while
  the backward runs;
- ``shared``: the shared-memory buffers of a process mode's round the process touches;
- ``runtime``: what torch loads when a process first trains (its first optimizer imports
  ``torch._dynamo``), in each process that trains and has not loaded it yet;
- ``harness`` (the parent only): the round's global model, serial's last FedAvg update
  (float64; another mode's is kept only while serial's is still to come), the clients'
  fingerprints and timings kept for the results.

Interleaved (the default), the modes of one block (``gpubench.modes.interleaved_blocks``:
every mode without daemons, then ray and flower each beside serial) are alive at once and
their peaks add up; the peak is the largest block's. With ``--sequential`` one mode runs at a
time. Where the interleaved blocks do not fit but one mode at a time does, the run goes
sequential (``gpubench.run.prepare``); a run that cannot fit either way is refused before
anything starts (``ConfigError``: one line with what is needed, what is available, and the
option to change).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from gpubench.config import ConfigError, RunConfig
from gpubench.machine.devices import Device
from gpubench.modes import interleaved_blocks, mode_facts
from gpubench.modes.base import process_rss
from gpubench.modes.facts import placed
from gpubench.modes.stacked import chunk_size
from gpubench.monitor import nvml
from gpubench.results import KIND_PROCESS
from gpubench.train.updates import GAP_CHUNK

# A CUDA context and the kernels torch loads into it, per process and GPU.
CUDA_CONTEXT_BYTES = 600 << 20
RAY_PROCESSES_BYTES = 700 << 20  # a local Ray's head processes (gcs, raylet, ...)
# What a process's first optimizer loads (torch._dynamo): measured 148 MiB (torch 2.14, CPU).
TORCH_RUNTIME_BYTES = 150 << 20
# Checking a round reads the update a chunk at a time: a few float64 chunks at once.
GAP_CHUNK_BYTES = 8 * 8 * GAP_CHUNK
# What the parent keeps per client and round of each mode (a ClientTiming and its phases,
# a fingerprint row in the ledger).
RECORD_BYTES = 1200
# Activations: what autograd saves, and about as much again for its gradients in backward.
ACTIVATION_FACTOR = 2.0


@dataclass(frozen=True)
class ProcessEstimate:
    """One process's estimated peak: host bytes (resident) and device bytes (a GPU's)."""

    mode: str
    role: str  # "parent" or "worker N"
    device: str
    parts: dict[str, int] = field(default_factory=dict)  # host bytes by part
    device_bytes: int = 0

    @property
    def host_bytes(self) -> int:
        return sum(self.parts.values())


@dataclass(frozen=True)
class MemoryPlan:
    processes: tuple[ProcessEstimate, ...]
    host_bytes: int  # the peak of all processes together (modes at once if interleaved)
    host_available: int | None
    shared_bytes: int  # shared memory in use at the peak
    shared_available: int | None
    device_bytes: dict[str, int]  # GPU id -> peak bytes
    device_total: dict[str, int]
    data_budget: int | None
    peak_modes: tuple[str, ...] = ()  # the modes running at the host's peak
    # GPU id -> bytes free before the run (other programs' jobs taken off; NVML), else total
    device_free: dict[str, int] = field(default_factory=dict)

    @property
    def parent_bytes(self) -> int:
        """The parent's peak (its in-process modes at once if interleaved, else the largest)."""
        return sum(p.host_bytes for p in self.processes if p.role == "parent")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["parent_bytes"] = self.parent_bytes
        for p, proc in zip(d["processes"], self.processes, strict=True):
            p["host_bytes"] = proc.host_bytes
        return d

    def refusal(self) -> str | None:
        """Why the run cannot fit, on one line (None: it fits)."""
        if self.host_available is not None and self.host_bytes > self.host_available:
            return (
                f"the run needs about {gib(self.host_bytes)} of host memory "
                f"({self._largest()}) but {gib(self.host_available)} is available: "
                f"{self._hint()}"
            )
        if self.shared_available is not None and self.shared_bytes > self.shared_available:
            return (
                f"the run needs about {gib(self.shared_bytes)} of shared memory (/dev/shm) but "
                f"{gib(self.shared_available)} is free: run fewer process modes at once "
                "(--sequential), or a smaller model"
            )
        for dev, need in self.device_bytes.items():
            total = self.device_total.get(dev)
            free = self.device_free.get(dev, total)
            if free and need > free:
                return (
                    f"{dev} needs about {gib(need)} of device memory but {gib(free)} of its "
                    f"{gib(total)} is free: {self._hint()}"
                )
        return None

    def _parts(self) -> dict[str, int]:
        """Host bytes by part, over the processes of the peak (the largest mode's, unless
        interleaved)."""
        parts: dict[str, int] = {}
        for p in self.processes:
            if p.mode in self.peak_modes or p.mode == "-":
                for k, v in p.parts.items():
                    parts[k] = parts.get(k, 0) + v
        return parts

    def _largest(self) -> str:
        parts = self._parts()
        name = max(parts, key=lambda k: parts[k])
        return f"{name} {gib(parts[name])}"

    def _hint(self) -> str:
        parts = self._parts()
        name = max(parts, key=lambda k: parts[k])
        return {
            "data": "set --data-budget (e.g. 1G) to keep at most that much client data per "
            "worker and make the rest again when it trains, or lower --clients or "
            "--samples-per-client",
            "activations": "lower --batch-size",
            "harness": "lower --clients, --rounds or the number of --modes",
        }.get(name, "run fewer workers (--workers, --workers-per-device) or fewer --modes at "
                    "once (--sequential)")

    def table(self) -> str:
        """The estimate as a text table, one row per process, then the totals."""
        names = ["base", "runtime", "model", "data", "activations", "shared", "harness"]
        head = ["mode", "process", "device", *names, "host", "device mem"]
        rows = [head]
        for p in self.processes:
            rows.append([p.mode, p.role, p.device, *(mib(p.parts.get(n, 0)) for n in names),
                         mib(p.host_bytes), mib(p.device_bytes) if p.device_bytes else "-"])
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        avail = gib(self.host_available) if self.host_available is not None else "unknown"
        lines.append("")
        lines.append(f"host peak: {gib(self.host_bytes)} of {avail} available "
                     f"(parent {gib(self.parent_bytes)})")
        shm = gib(self.shared_available) if self.shared_available is not None else "unknown"
        lines.append(f"shared memory: {gib(self.shared_bytes)} of {shm} free")
        for dev, need in self.device_bytes.items():
            total = self.device_total.get(dev, 0)
            lines.append(f"{dev}: {gib(need)} of {gib(self.device_free.get(dev, total))} free "
                         f"(total {gib(total)})")
        budget = "every client's" if self.data_budget is None else gib(self.data_budget)
        lines.append(f"client data kept per worker: {budget}")
        return "\n".join(lines)


def gib(n: int | None) -> str:
    return "?" if n is None else f"{n / (1 << 30):.2f} GiB"


def mib(n: int) -> str:
    return f"{n / (1 << 20):.0f}"


@dataclass(frozen=True)
class Inputs:
    """What the estimate is made from."""

    config: RunConfig
    devices: tuple[Device, ...]
    sizes: Sequence[int]
    state_size: int
    data_bytes_per_sample: int
    activation_bytes_per_sample: int
    base_bytes: int
    # 0 when the parent had loaded it before the run (the case's imports did): a worker
    # loads the same with the case.
    runtime_bytes: int = TORCH_RUNTIME_BYTES


def _workers(config: RunConfig, mode: str, devices: tuple[Device, ...]) -> list[Device]:
    """The devices of the workers ``mode`` starts (one entry per worker; workers without
    clients start not)."""
    on, per = placed(mode_facts(mode), devices, config)
    return [d for d in on for _ in range(per)][: config.clients]


def vectorized_chunk(
    cfg: RunConfig, clients: int, per_client: int, workers: int, available: int | None
) -> int:
    """The clients a vectorized worker stacks at once, as the worker decides it from
    ``available`` bytes: its GPU's free memory for a CUDA worker, else the host's."""
    return chunk_size(clients, per_client, available or 0, workers,
                      cfg.options.get("vectorize_chunk"))


def device_free(devices: Sequence[Device]) -> dict[str, int]:
    """Each GPU's free memory before the run (NVML), or its total where NVML cannot tell."""
    out = {}
    for d in devices:
        if d.is_cuda:
            free = nvml.free_memory(d)
            if free is None:
                free = d.memory_total_bytes
            if free:
                out[d.id] = free
    return out


def estimate(inputs: Inputs) -> MemoryPlan:  # noqa: C901, PLR0912, PLR0915 - one term per part of each process, read top to bottom
    cfg = inputs.config
    s = inputs.state_size
    clients = cfg.clients
    batch = cfg.train.batch_size
    budget = cfg.train.data_budget
    per_sample = inputs.data_bytes_per_sample
    largest = max(inputs.sizes) * per_sample
    activations = int(ACTIVATION_FACTOR * min(batch, max(inputs.sizes))
                      * inputs.activation_bytes_per_sample)
    # A replica (4 B a float): state, gradients, momentum; the sink: a padded row, a float32
    # block and, off the host partial sum, a float64 one; the fingerprint's signs.
    replica = 4 * s * 3 + 4 * s * 2

    def data(share: int) -> int:
        """Data one store keeps for ``share`` samples' worth of clients, plus one made."""
        total = share * per_sample
        kept = total if budget is None else min(budget, total)
        return kept + (largest if kept < total else 0)

    steps = cfg.warmup + cfg.rounds
    total_samples = sum(inputs.sizes)
    free = device_free(inputs.devices)
    host_free = _host_available()
    procs: list[ProcessEstimate] = []
    shared_by_mode: dict[str, int] = {}
    for mode in cfg.modes:
        facts = mode_facts(mode)
        if facts.kind == KIND_PROCESS:
            workers = _workers(cfg, mode, inputs.devices)
            n = max(1, len(workers))
            share = math.ceil(total_samples / n)
            shared = 4 * s + 8 * s * n + 16 * 8 * clients
            shared_by_mode[mode] = shared
            for w, dev in enumerate(workers):
                model = replica
                acts = activations
                if mode == "vectorized":
                    # stacked clients: a chunk's states, gradients and momenta at once
                    room = free.get(dev.id) if dev.is_cuda else host_free
                    k = vectorized_chunk(cfg, math.ceil(clients / n), 3 * 4 * s + activations,
                                         1 if dev.is_cuda else n, room)
                    model = replica + 3 * 4 * s * k
                    acts = activations * k
                host = {"base": inputs.base_bytes, "runtime": inputs.runtime_bytes,
                        "shared": 4 * s + 8 * s}
                device_bytes = 0
                if dev.is_cuda:
                    device_bytes = CUDA_CONTEXT_BYTES + model + data(share) + acts
                else:
                    host.update(model=model, data=data(share), activations=acts)
                procs.append(ProcessEstimate(mode, f"worker {w}", dev.id, host, device_bytes))
            if facts.daemons:  # a local Ray's head processes (flower's engine runs on Ray)
                procs.append(ProcessEstimate(mode, "ray", "-", {"base": RAY_PROCESSES_BYTES}))
        # The replicas the parent holds: one per thread of a thread mode, serial's one.
        replicas = 0 if facts.kind == KIND_PROCESS else placed(facts, inputs.devices, cfg)[1]
        dev = inputs.devices[0]
        parent = {"harness": (RECORD_BYTES + 16 * 8) * clients * steps}
        if _before_serial(cfg, mode):  # its last update waits for serial's
            parent["harness"] += 8 * s
        if facts.kind == KIND_PROCESS:
            parent["shared"] = 4 * s + 8 * s * max(1, len(_workers(cfg, mode, inputs.devices)))
        device_bytes = 0
        if replicas:
            if dev.is_cuda:
                device_bytes = CUDA_CONTEXT_BYTES + replicas * replica + data(total_samples)
                device_bytes += replicas * activations
            else:
                parent.update(model=replicas * replica, data=data(total_samples),
                              activations=replicas * activations)
        procs.append(ProcessEstimate(mode, "parent", dev.id, parent, device_bytes))
    # The harness's own: the base, one global model, serial's last update and what checking
    # a round reads at a time; torch's runtime once a mode trains in this process.
    common = {"base": inputs.base_bytes, "harness": 4 * s + 8 * s + GAP_CHUNK_BYTES}
    if any(mode_facts(m).kind != KIND_PROCESS for m in cfg.modes):
        common["runtime"] = inputs.runtime_bytes
    procs.insert(0, ProcessEstimate("-", "parent", "host", common))
    return replace(_totals(procs, cfg, shared_by_mode, inputs.devices), device_free=free)


def _before_serial(cfg: RunConfig, mode: str) -> bool:
    """Whether ``mode``'s last round ends before serial's (its update is kept until then)."""
    modes = list(cfg.modes)
    return "serial" in modes and mode != "serial" and modes.index(mode) < modes.index("serial")


def _totals(
    procs: list[ProcessEstimate],
    cfg: RunConfig,
    shared_by_mode: dict[str, int],
    devices: tuple[Device, ...],
) -> MemoryPlan:
    def of(mode: str) -> list[ProcessEstimate]:
        return [p for p in procs if p.mode == mode]

    common = sum(p.host_bytes for p in of("-"))
    per_mode = {m: sum(p.host_bytes for p in of(m)) for m in cfg.modes}
    kept = {m: sum(p.parts.get("harness", 0) for p in of(m)) for m in cfg.modes}
    # The modes alive at once: a block of the interleaved schedule, or one mode. What the
    # parent keeps of each mode adds up either way.
    groups = interleaved_blocks(cfg.modes) if cfg.interleave else tuple((m,) for m in cfg.modes)

    def live(group: tuple[str, ...]) -> int:
        return sum(per_mode[m] - kept[m] for m in group)

    peak: tuple[str, ...] = max(groups, key=live)
    host = common + sum(kept.values()) + live(peak)
    shared = max(sum(shared_by_mode.get(m, 0) for m in g) for g in groups)
    device_bytes: dict[str, int] = {}
    for d in devices:
        if not d.is_cuda:
            continue
        by_mode = {m: sum(p.device_bytes for p in of(m) if p.device == d.id) for m in cfg.modes}
        device_bytes[d.id] = max(sum(by_mode[m] for m in g) for g in groups)
    available = _host_available()
    return MemoryPlan(
        tuple(procs),
        host,
        available,
        shared,
        _shared_free(),
        device_bytes,
        {d.id: d.memory_total_bytes for d in devices if d.is_cuda and d.memory_total_bytes},
        cfg.train.data_budget,
        peak,
    )


def _host_available() -> int | None:
    """Memory this run may use: what is available now plus what the parent already holds."""
    try:
        import psutil

        return int(psutil.virtual_memory().available) + (process_rss() or 0)
    except Exception:  # psutil missing: no host check
        return None


def _shared_free() -> int | None:
    try:
        return int(shutil.disk_usage("/dev/shm").free)
    except OSError:
        return None


def check_fits(plan: MemoryPlan) -> None:
    reason = plan.refusal()
    if reason is not None:
        raise ConfigError(reason)


def parent_peak_rss() -> int | None:
    """This process's peak resident memory so far (bytes; Linux reports KiB)."""
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    except (ImportError, OSError):
        return None


def record(plan: MemoryPlan | None, modes: Sequence[Any]) -> dict[str, Any] | None:
    """The estimate next to what the run measured: the parent's peak RSS and each mode's
    workers' (``ModeResult.worker_memory``)."""
    if plan is None:
        return None
    workers = {
        m.name: [w.rss_bytes for w in m.worker_memory]
        for m in modes
        if m.worker_memory and m.name not in ("serial", "threaded", "streams")
    }
    estimate = plan.to_dict()
    for key in ("processes", "peak_modes"):  # lists, as the JSON reads back
        estimate[key] = list(estimate[key])
    return {
        "estimate": estimate,
        "measured": {"parent_peak_rss_bytes": parent_peak_rss(), "worker_rss_bytes": workers},
    }
