"""The pieces a mode's record is made of: each client's timing, each round, the devices'
statistics, the workers' memory, other programs' load and what the mode is (its facts).

Plain frozen dataclasses with no behaviour beyond describing themselves; :mod:`gpubench.results`
puts them together into a run (and exports every name here, so readers import one module).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class ClientTiming:
    """One client's local training in one round.

    ``start_s``/``end_s`` are seconds since the round started in the parent (one monotonic
    clock is shared by every process on the machine); the phase times come from the worker.
    """

    client: int
    device: str
    worker: int
    samples: int
    load_s: float
    train_s: float
    write_s: float
    start_s: float
    end_s: float
    # Seconds per phase of this client (PHASES order; a mode may add its own); they add up
    # to ``end_s - start_s``.
    phases: dict[str, float] = field(default_factory=dict)
    # Seconds its training threads were runnable but not running (waiting for a CPU), from
    # the kernel's per-thread scheduler statistics (gpubench.machine.schedstat); None where
    # not measured.
    wait_s: float | None = None


# A client's phases: building/loading its model and optimizer (and weights), waiting for
# batches, host-to-device copies, forward/backward/step, writing its update and
# fingerprint, and folding the update into the worker's FedAvg partial sum.
PHASES = ("setup", "data", "copy", "compute", "write", "aggregate")


@dataclass(frozen=True)
class RoundRecord:
    index: int
    warmup: bool
    time_s: float
    clients: tuple[ClientTiming, ...] = ()
    # The parent's FedAvg reduction of the round and its check of it (outside ``time_s``).
    aggregate_s: float | None = None
    # Per client (client order): relative difference of its trained update from serial's
    # same client in the same round; () where not compared.
    client_diffs: tuple[float | None, ...] = ()
    # Other programs' mean load per device during this round (% of the device; the mode's
    # devices; empty where not measured).
    other_load_pct: dict[str, float] = field(default_factory=dict)
    # When the round started: seconds since the monitor's ``t0`` (the run's start where no
    # monitor ran), the clock of its spans and timeline; None in older files.
    start_s: float | None = None


@dataclass(frozen=True)
class OpTrace:
    """A worker's torch.profiler trace of the profiled round (``--profile-ops``): a Chrome
    trace event file as torch exports it, left where the worker wrote it."""

    worker: int
    device: str
    path: str


@dataclass(frozen=True)
class ProfiledRound:
    """``--profile-ops``: one round after the mode's measured ones, run with torch.profiler on
    in every worker around its training; in no statistic (not in ``rounds`` nor
    ``round_times_s``). Its time against the median measured round is the profiler's cost."""

    round: RoundRecord
    traces: tuple[OpTrace, ...] = ()
    # Wall-clock time (``time.time_ns()``) at ``round.start_s``: the profiler's timestamps
    # count from the epoch, gpubench's from the monitor's t0.
    wall_start_ns: int = 0
    # The mode's median measured round before it, in seconds.
    median_round_s: float | None = None

    @property
    def cost(self) -> float | None:
        """How much longer the profiled round took than the median measured one (0.25: 25%)."""
        if not self.median_round_s:
            return None
        return self.round.time_s / self.median_round_s - 1.0


@dataclass(frozen=True)
class OtherProcess:
    """A program outside the run that used a device while a mode's rounds ran."""

    pid: int
    name: str
    device: str
    pct: float | None  # its mean share of the device where measured (% of capacity)


@dataclass(frozen=True)
class Disturbance:
    """Other programs took more than ``OTHER_LOAD_LIMIT_PCT`` of a device during a mode's
    measured rounds (``mode``: the mode itself, or serial, whose rounds its speed divides)."""

    mode: str
    device: str
    pct: float
    processes: tuple[OtherProcess, ...] = ()

    def who(self) -> str:
        """The programs named, heaviest first: ``pid 4242 stress (97%)``."""
        return ", ".join(
            f"pid {p.pid} {p.name}" + (f" ({p.pct:.0f}%)" if p.pct is not None else "")
            for p in self.processes[:3]
        )

    def describe(self) -> str:
        """The reason a verdict gives: ``other programs used 48% of cpu:1 during multi-gpu's
        measured rounds (pid 4242 stress (97%))``."""
        who = self.who()
        return (f"other programs used {self.pct:.0f}% of {self.device} during {self.mode}'s "
                f"measured rounds" + (f" ({who})" if who else ""))


@dataclass(frozen=True)
class WorkerMemory:
    """A worker's view of its own memory (torch's CUDA allocator, or RSS on CPU)."""

    worker: int
    device: str
    pid: int | None
    max_allocated_bytes: int | None = None
    max_reserved_bytes: int | None = None
    rss_bytes: int | None = None
    # The host that ran the worker, where a mode spans several (ray: the Ray node's id).
    node: str | None = None

    def merged(self, later: WorkerMemory) -> WorkerMemory:
        """The same worker's peaks over both readings (``later`` names pid and device)."""

        def peak(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else max(a, b)

        return replace(
            later,
            max_allocated_bytes=peak(self.max_allocated_bytes, later.max_allocated_bytes),
            max_reserved_bytes=peak(self.max_reserved_bytes, later.max_reserved_bytes),
            rss_bytes=peak(self.rss_bytes, later.rss_bytes),
        )


@dataclass(frozen=True)
class DeviceStats:
    """What one device did while one mode's measured rounds ran (from the monitor)."""

    device: str
    busy: bool | None
    util_mean_pct: float | None
    util_p95_pct: float | None
    mem_peak_bytes: int | None
    samples: int = 0
    process_mem_peak_bytes: dict[str, int] = field(default_factory=dict)
    energy_per_round_j: float | None = None
    power_mean_w: float | None = None
    sm_active_mean_pct: float | None = None  # GPM: % of SMs busy (Hopper and later)
    sm_occupancy_mean_pct: float | None = None  # GPM: % of the SMs' warp slots in use
    # The utilisation figures rest on fewer samples than the monitor's threshold (a short
    # mode, or a slow sample rate): read them as rough, not solid.
    few_samples: bool = False


# What a mode is (gpubench.modes declares it; the harness records it with each mode's result):
# where its clients train ...
KIND_INLINE = "inline"  # one after another in the calling process
KIND_THREAD = "thread"  # threads of the calling process
KIND_PROCESS = "process"  # worker processes (or another engine's)
# ... and where its workers go.
PLACE_FIRST = "first-device"  # every worker on device 0
PLACE_EACH = "each-device"  # ``--workers-per-device`` workers on every device
PLACE_ONE_EACH = "one-per-device"  # one worker on every device
UNKNOWN = "unknown"  # not recorded (an older file)


@dataclass(frozen=True)
class ModeFacts:
    """What a mode is, whatever it measured: ``kind`` (KIND_*) and ``placement`` (PLACE_*)
    of its workers; ``daemons``: it keeps processes alive between its rounds (Ray's, Flower's);
    ``mps_twin``: the mode that runs it under CUDA MPS (``--mps on``), if any."""

    kind: str
    placement: str
    daemons: bool = False
    mps_twin: str | None = None
