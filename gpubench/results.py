"""The data model: the only contract between measuring and reporting.

Everything a run measures ends up in a :class:`Results` object and, from there, in one JSON
file with its own ``schema_version``. Reports, gates and findings are computed from that file
alone, so this module imports nothing heavier than the standard library and
:mod:`gpubench.stats` (numpy), whose arithmetic answers :meth:`Results.speed`: the one speed
measure every reader shows.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from gpubench.monitor_record import (  # noqa: F401 - re-exported: the spans' phases
    PHASE_BETWEEN,
    PHASE_COLD_START,
    PHASE_PROFILED,
    PHASE_REPLACED,
    PHASE_ROUND,
    PHASE_WARMUP,
    Monitor,
)
from gpubench.output import write_atomic
from gpubench.records import (  # noqa: F401 - re-exported: readers import one module
    KIND_INLINE,
    KIND_PROCESS,
    KIND_THREAD,
    PHASES,
    PLACE_EACH,
    PLACE_FIRST,
    PLACE_ONE_EACH,
    UNKNOWN,
    ClientTiming,
    DeviceStats,
    Disturbance,
    ModeFacts,
    OpTrace,
    OtherProcess,
    ProfiledRound,
    RoundRecord,
    WorkerMemory,
)
from gpubench.stats import REFERENCE_MODE, Rounds, Speed, median  # readers take median here

SCHEMA_VERSION = 2
# A sweep's ``summary.json`` is versioned apart: gpubench.sweep_summary.

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_NOT_APPLICABLE = "not_applicable"
STATUSES = (STATUS_OK, STATUS_FAILED, STATUS_NOT_APPLICABLE)

# The monitor's notes (``monitor.note``); reports translate them (report.i18n.monitor_note).
NOTE_NO_GPU = "no GPU in this run: host backend measured the CPU slots"
NOTE_HOST_CHOSEN = "host backend chosen: GPU utilisation not measured"
NOTE_HOST_INSTEAD = ": host backend measured instead"  # after NVML's reason
NOTE_TICKS_SKIPPED = "{n} tick(s) skipped: sampling fell behind"
NOTE_SAMPLES_FAILED = "{n} sample(s) failed in the backend (recorded as null)"
NOTE_SEPARATOR = "; "

# Other programs' load (% of a device's capacity, mean over a mode's measured rounds) above
# which a speed measured on that device is no evidence: its verdict is INCONCLUSIVE, and an
# interleaved round set that ran beside more is measured again.
OTHER_LOAD_LIMIT_PCT = 10.0


# The environment variables that set a process's thread counts: the doctor records them, and
# a finding says when they pin torch to fewer threads than a slot has.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


# A device id names its kind before the colon: ``cuda:0`` is a GPU, ``cpu:1`` a CPU slot.
CPU_KINDS = ("cpu", "cpu-slot")


def device_kind_of(device: str) -> str:
    """``cpu`` for a CPU slot (``cpu:0``), ``cuda`` for a GPU (``cuda:1``), else the prefix."""
    kind = device.partition(":")[0].strip().lower()
    return "cpu" if kind in CPU_KINDS else kind


def _device_order(device: str) -> tuple[int, str, int, str]:
    """GPUs first, then CPU slots, each in index order."""
    kind, _, index = device.partition(":")
    rank = 0 if kind == "cuda" else 1 if device_kind_of(device) == "cpu" else 2
    return (rank, kind, int(index) if index.isdigit() else 0, device)


class ResultsFileError(ValueError):
    """A results file that cannot be used (unreadable, corrupt, unknown version)."""


@dataclass(frozen=True)
class ModeResult:
    name: str
    status: str
    error: str | None = None
    devices: tuple[str, ...] = ()
    workers: int = 1
    cold_start_s: float | None = None
    warmup_times_s: tuple[float, ...] = ()
    round_times_s: tuple[float, ...] = ()
    speedup_vs_serial: float | None = None
    max_abs_diff_vs_serial: float | None = None
    same_result: bool | None = None
    rounds: tuple[RoundRecord, ...] = ()
    device_stats: tuple[DeviceStats, ...] = ()
    worker_memory: tuple[WorkerMemory, ...] = ()
    notes: tuple[str, ...] = ()
    extra: ModeExtra = field(default_factory=lambda: ModeExtra())
    # The whole traceback of a failure (``error`` is its one-line reason).
    error_detail: str | None = None
    # The client (and round) whose update differs most from serial's, relative to the size
    # of serial's update of that client.
    worst_client: int | None = None
    worst_round: int | None = None
    worst_client_diff: float | None = None
    # False: this mode's work is known not to be reproducible (then never called "same").
    reproducible: bool = True
    not_reproducible_reason: str | None = None
    # Other programs' mean load per device of this mode over its measured rounds (% of the
    # device's capacity; empty: not measured), and the heaviest of them.
    other_load_pct: dict[str, float] = field(default_factory=dict)
    other_processes: tuple[OtherProcess, ...] = ()
    # What the mode is, as the harness recorded it (None in files older than the record:
    # read it through facts_of).
    facts: ModeFacts | None = None
    # ``--profile-ops``: the round run with torch.profiler on (None: not profiled).
    profiled: ProfiledRound | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.extra, ModeExtra):  # a plain mapping: made typed
            object.__setattr__(self, "extra", ModeExtra.of(self.extra))

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def on_cpu_slots(self) -> bool:
        """Every device this mode ran on is a CPU slot (False when it names none)."""
        return bool(self.devices) and all(device_kind_of(d) == "cpu" for d in self.devices)

    @property
    def median_round_s(self) -> float | None:
        return median(self.round_times_s) if self.round_times_s else None

    @property
    def tolerance(self) -> float | None:
        """The relative per-client tolerance this mode's result was checked with (recorded
        once, by the harness; filled in from the run's for older files)."""
        return self.extra.tolerance


class FlatRecord(Mapping[str, Any]):
    """A typed part of the schema that reads like the flat JSON object it is saved as.

    Subclasses are frozen dataclasses whose fields (but ``other``) are the typed keys;
    ``other`` keeps every other key. A key whose value is ``None`` counts as absent.
    """

    other: dict[str, Any]

    @classmethod
    def typed_keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name != "other")  # type: ignore[arg-type]

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> Any:
        if isinstance(data, cls):
            return data
        rest = dict(data or {})
        known = {k: rest.pop(k) for k in cls.typed_keys() if k in rest}
        for k, v in known.items():
            if isinstance(v, list):
                known[k] = tuple(v)
        return cls(**known, other=rest)  # type: ignore[call-arg]

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.other)
        out.update({k: v for k in self.typed_keys() if (v := getattr(self, k)) is not None})
        return out

    def __getitem__(self, key: str) -> Any:
        if key in self.typed_keys():
            value = getattr(self, key)
            if value is None:
                raise KeyError(key)
            return value
        return self.other[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


@dataclass(frozen=True)
class RunRecord(FlatRecord):
    """The configuration a results file records: what ran, typed; the part of the schema the
    gate compares runs by and the reports describe them with. Every other recorded setting
    (an option of one mode, a newer option) is kept in ``other``."""

    case: str | None = None
    clients: int | None = None
    batch_size: int | None = None
    local_epochs: int | None = None
    samples_per_client: str | None = None
    partition: str | None = None
    seed: int | None = None
    devices: str | None = None
    device_ids: tuple[str, ...] | None = None
    modes: tuple[str, ...] | None = None
    interleave: bool | None = None
    warmup: int | None = None
    rounds: int | None = None
    tolerance_used: float | None = None
    samples: tuple[int, ...] | None = None  # per client, the samples it really has
    state_size: int | None = None
    draws_global_rng: bool | None = None
    # How the modes took turns: "interleaved" (round by round, in the groups of
    # ``schedule_blocks``, each "mode,mode,...") or "sequential"; ``schedule_reason`` says why
    # a run asked to interleave ran one mode after another (the memory plan).
    schedule: str | None = None
    schedule_reason: str | None = None
    schedule_blocks: tuple[str, ...] | None = None
    # How far a correct computation of one client drifted with its sums done otherwise
    # (gpubench.run.prepare.measure_noise_floor), relative as the client diffs are.
    noise_floor: float | None = None
    # Measured round sets that other programs' load disturbed, each measured again (or kept,
    # ``kept``, once the bound of as many extra sets as measured rounds was reached): step,
    # reason, and the replaced rounds' times and other load per mode.
    remeasured_sets: tuple[dict[str, Any], ...] | None = None
    other: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClientAdjudication:
    """One client beyond the tolerance, judged by its own sensitivity
    (gpubench.run.adjudicate): how far valid variants of serial's computation of it landed
    from serial's update (``variants``: name -> relative difference, as ``diff`` is), the
    bound that spread allows (``allowed``) and whether the mode's ``diff`` is within it."""

    client: int
    round: int  # index in the mode's rounds, as ModeResult.worst_round
    diff: float
    variants: dict[str, float]
    allowed: float
    agrees: bool

    @property
    def spread(self) -> float:
        """The farthest a valid variant landed."""
        return max(self.variants.values(), default=0.0)


@dataclass(frozen=True)
class Adjudication:
    """The clients a mode had beyond its tolerance and what adjudicating them found.

    ``unavailable``: why they could not be adjudicated (a case with its own training):
    the plain tolerance decided. ``left``: clients beyond the tolerance not adjudicated (past
    the few a mode gets, or too far to agree whatever their variants), which decide as before.
    """

    clients: tuple[ClientAdjudication, ...] = ()
    unavailable: str | None = None
    left: int = 0

    @property
    def agreeing(self) -> tuple[ClientAdjudication, ...]:
        return tuple(c for c in self.clients if c.agrees)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Adjudication:
        return cls(
            clients=tuple(
                ClientAdjudication(
                    client=int(c["client"]), round=int(c["round"]), diff=float(c["diff"]),
                    variants={str(k): float(v) for k, v in c["variants"].items()},
                    allowed=float(c["allowed"]), agrees=bool(c["agrees"]),
                )
                for c in data.get("clients") or ()
            ),
            unavailable=data.get("unavailable"),
            left=int(data.get("left") or 0),
        )


@dataclass(frozen=True)
class ModeExtra(FlatRecord):
    """What a mode records of its own, beyond what every mode has."""

    tolerance: float | None = None  # the relative per-client tolerance it was checked with
    # The parts of its cold start it can tell apart (flower: importing flwr, Flower's engine
    # up to the first round, the set-up round), in seconds.
    startup_s: dict[str, float] | None = None
    # Clients beyond the tolerance, adjudicated (None: none was beyond it; older files).
    adjudication: Adjudication | None = None
    # Each worker process's torch settings (TF32, cuDNN, matmul precision, threads) as it
    # reported them when ready, by worker number; None for modes in the calling process.
    worker_settings: dict[str, dict[str, Any]] | None = None
    # How a mode that runs another engine ran it (flower: {"engine": "flwr run", "flwr":
    # version, "federation_config": ...}); None for gpubench's own modes.
    engine: dict[str, Any] | None = None
    other: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.adjudication, Mapping):
            object.__setattr__(self, "adjudication", Adjudication.from_dict(self.adjudication))

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.adjudication is not None:
            out["adjudication"] = asdict(self.adjudication)
        return out


@dataclass(frozen=True)
class Results:
    environment: dict[str, Any]
    config: RunRecord
    modes: tuple[ModeResult, ...]
    devices: tuple[dict[str, Any], ...] = ()
    monitor: dict[str, Any] | None = None
    command: str = ""
    created_utc: str = ""
    interrupted: bool = False
    tool_version: str = ""
    schema_version: int = SCHEMA_VERSION
    # The memory plan's estimate before the run, next to what was measured
    # (gpubench.run.memplan.record): {"estimate": {...}, "measured": {...}}; None if not made.
    memory_plan: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.config, RunRecord):  # a plain mapping: made typed
            object.__setattr__(self, "config", RunRecord.of(self.config))
        used = self.config.tolerance_used
        if isinstance(used, (int, float)) and not isinstance(used, bool) and any(
            m.extra.tolerance is None for m in self.modes
        ):  # older files recorded the run's tolerance only: it was every mode's
            object.__setattr__(self, "modes", tuple(
                m if m.extra.tolerance is not None
                else replace(m, extra=replace(m.extra, tolerance=float(used)))
                for m in self.modes
            ))

    def disturbance(self, name: str) -> Disturbance | None:
        """Whether other programs' load makes ``name``'s speed no evidence: the worst device
        where they took more than ``OTHER_LOAD_LIMIT_PCT`` during its measured rounds or
        serial's (its speed is a ratio of the two); None when both ran quiet or unmeasured."""
        worst: Disturbance | None = None
        for m in (m for m in self.modes if m.name in (name, "serial")):
            for device, pct in m.other_load_pct.items():
                if pct > OTHER_LOAD_LIMIT_PCT and (worst is None or pct > worst.pct):
                    named = tuple(p for p in m.other_processes if p.device == device)
                    worst = Disturbance(m.name, device, pct, named)
        return worst

    @cached_property
    def monitor_record(self) -> Monitor:
        """The monitor's section parsed (:class:`gpubench.monitor_record.Monitor`): what
        readers use; ``monitor`` stays the raw object the file holds."""
        return Monitor.of(self.monitor)

    def mode(self, name: str) -> ModeResult | None:
        for m in self.modes:
            if m.name == name:
                return m
        return None

    def speed(self, name: str) -> Speed | None:
        """``name``'s speed against serial (:class:`gpubench.stats.Speed`): the one ratio,
        interval and faster/slower judgement that every reader shows. None when it or serial
        did not run or kept no measured rounds (:func:`rounds_vs_serial`)."""
        mode = self.mode(name)
        rounds = rounds_vs_serial(self, mode) if mode is not None else None
        return None if rounds is None else Speed.of(name, rounds)

    def with_modes(self, modes: tuple[ModeResult, ...]) -> Results:
        return replace(self, modes=modes)

    def with_speedups(self) -> Results:
        """Every mode with ``speedup_vs_serial`` set to its :meth:`speed` (None without one):
        the saved figure is the one every reader computes."""
        return self.with_modes(tuple(
            replace(m, speedup_vs_serial=s.ratio if (s := self.speed(m.name)) else None)
            for m in self.modes
        ))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this run as its JSON file, atomically (:func:`write_results`); its path."""
        return write_results(self, path)

    @property
    def device_ids(self) -> tuple[str, ...]:
        """The devices of the run: those it was given (``config.device_ids``), else every
        device a mode ran on, else every device recorded; GPUs first, in index order."""
        ids = self.config.device_ids
        if ids and all(isinstance(i, str) and i for i in ids):
            return tuple(ids)
        found = {d for m in self.modes for d in m.devices} or {
            str(e["id"]) for e in self.devices if isinstance(e, dict) and e.get("id")}
        return tuple(sorted(found, key=_device_order))

    @property
    def on_cpu_slots(self) -> bool:
        """Every device of the run is a CPU slot (False when none is recorded)."""
        ids = self.device_ids
        return bool(ids) and all(device_kind_of(d) == "cpu" for d in ids)

    @property
    def device_kind(self) -> str | None:
        """``cpu`` (CPU slots), ``cuda``, or both joined by ``+``; from the devices, else the
        ``--devices`` given; None when neither is recorded."""
        kinds = {device_kind_of(d) for d in self.device_ids}
        if not kinds:
            spec = str(self.config.devices or "").strip().lower()
            if spec.startswith(("cpu", "cuda")):
                kinds = {device_kind_of(spec)}
        return "+".join(sorted(kinds)) if kinds else None

    @property
    def device_count(self) -> int | None:
        """How many devices the run used, from the most specific record there is."""
        ids = self.config.device_ids
        if ids:
            return len(ids)
        count = self.config.get("device_count")
        if isinstance(count, int) and not isinstance(count, bool):
            return count
        used = {d for m in self.modes for d in m.devices}
        if used:
            return len(used)
        spec = str(self.config.devices or "").strip().lower()
        kind, _, rest = spec.partition(":")
        if kind == "cpu" and rest.isdigit():
            return int(rest)
        if kind == "cuda" and rest:
            return len([p for p in rest.split(",") if p.strip()])
        if spec.isdigit():
            return int(spec)
        return len(self.devices) or None  # every device found, used or not: a last resort


# --- what a speed is computed from ----------------------------------------------------------


def _measured_by_index(mode: ModeResult) -> dict[int, float] | None:
    """Measured round index -> time, when the mode's round records match its round times."""
    records = [r for r in mode.rounds if not r.warmup]
    if not records or tuple(r.time_s for r in records) != tuple(mode.round_times_s):
        return None
    by_index = {r.index: r.time_s for r in records}
    return by_index if len(by_index) == len(records) else None


def paired_rounds(reference: ModeResult, candidate: ModeResult) -> Rounds | None:
    """The two modes' rounds as pairs of one interleaved run: same round index, or position.

    None when they cannot be matched; unpaired when fewer than ``stats.MIN_PAIRS`` match.
    """
    ref, cand = _measured_by_index(reference), _measured_by_index(candidate)
    if ref is not None and cand is not None:
        common = sorted(set(ref) & set(cand))
        if not common:
            return None
        return Rounds.interleaved([ref[i] for i in common], [cand[i] for i in common])
    if len(reference.round_times_s) == len(candidate.round_times_s):
        return Rounds.interleaved(reference.round_times_s, candidate.round_times_s)
    return None


def rounds_vs_serial(results: Results, mode: ModeResult) -> Rounds | None:
    """What ``mode``'s speedup over serial in ``results`` is computed from, or None.

    None when either did not run or kept no measured rounds. Paired when the run was
    interleaved (``config["interleave"]``) and the rounds can be matched.
    """
    serial = results.mode(REFERENCE_MODE)
    if serial is None or not serial.ok or not mode.ok:
        return None
    if not serial.round_times_s or not mode.round_times_s:
        return None
    if results.config.interleave is True:
        pairs = paired_rounds(serial, mode)
        if pairs is not None:
            return pairs
    return Rounds.of(serial.round_times_s, mode.round_times_s)


# --- JSON ---------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """Make a value JSON-safe: tuples to lists, NaN/inf to null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def to_dict(results: Results) -> dict[str, Any]:
    d = asdict(results)
    d["config"] = results.config.to_dict()
    for m, out in zip(results.modes, d["modes"], strict=True):
        out["extra"] = m.extra.to_dict()
    return json_safe(d)


def to_json(results: Results) -> str:
    return json.dumps(to_dict(results), sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def _build(cls: type, data: Mapping[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


def _round_from_dict(r: Mapping[str, Any]) -> RoundRecord:
    return RoundRecord(
        index=int(r["index"]),
        warmup=bool(r["warmup"]),
        time_s=float(r["time_s"]),
        clients=tuple(_build(ClientTiming, c) for c in r.get("clients", ())),
        aggregate_s=None if r.get("aggregate_s") is None else float(r["aggregate_s"]),
        client_diffs=tuple(
            None if v is None else float(v) for v in r.get("client_diffs") or ()
        ),
        other_load_pct=_load_map(r.get("other_load_pct")),
        start_s=None if r.get("start_s") is None else float(r["start_s"]),
    )


def _profiled_from_dict(p: Mapping[str, Any] | None) -> ProfiledRound | None:
    if not p:
        return None
    median_s = p.get("median_round_s")
    return ProfiledRound(
        round=_round_from_dict(p["round"]),
        traces=tuple(_build(OpTrace, t) for t in p.get("traces") or ()),
        wall_start_ns=int(p.get("wall_start_ns") or 0),
        median_round_s=None if median_s is None else float(median_s),
    )


def _mode_from_dict(d: Mapping[str, Any]) -> ModeResult:
    d = dict(d)
    d["rounds"] = tuple(_round_from_dict(r) for r in d.get("rounds", ()))
    d["profiled"] = _profiled_from_dict(d.get("profiled"))
    d["device_stats"] = tuple(_build(DeviceStats, s) for s in d.get("device_stats", ()))
    d["worker_memory"] = tuple(_build(WorkerMemory, w) for w in d.get("worker_memory", ()))
    d["other_load_pct"] = _load_map(d.get("other_load_pct"))
    d["other_processes"] = tuple(_build(OtherProcess, p) for p in d.get("other_processes") or ())
    for key in ("devices", "warmup_times_s", "round_times_s", "notes"):
        d[key] = tuple(d.get(key) or ())
    d["extra"] = ModeExtra.of(d.get("extra") or {})
    d["facts"] = _build(ModeFacts, d["facts"]) if d.get("facts") else None
    if d.get("status") not in STATUSES:
        raise ResultsFileError(f"mode {d.get('name')!r} has unknown status {d.get('status')!r}")
    return _build(ModeResult, d)


# What readers derived from a mode's name before its result recorded the facts: the
# thread modes and the MPS twins of those versions. Frozen: a newer mode records its facts.
_THREADS_BEFORE_RECORD = ("threaded", "streams")
_MPS_TWINS_BEFORE_RECORD = {"multiprocess": "multiprocess+mps", "multi-gpu": "multi-gpu+mps"}


def facts_of(mode: ModeResult) -> ModeFacts:
    """What ``mode`` is: as recorded, or, in a file from before the record, what its name (a
    counterfactual row's base: ``threaded@torch-threads=1``) was taken to mean then (its
    placement unknown)."""
    if mode.facts is not None:
        return mode.facts
    base = mode.name.split("@", 1)[0]
    kind = (KIND_THREAD if base in _THREADS_BEFORE_RECORD
            else KIND_INLINE if base == "serial" else KIND_PROCESS)
    return ModeFacts(kind, UNKNOWN, mps_twin=_MPS_TWINS_BEFORE_RECORD.get(base))


def _load_map(value: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in (value or {}).items() if v is not None}


# Upgrades from an older schema version to the next one; keyed by the old version.
def _from_v1(d: dict[str, Any]) -> dict[str, Any]:
    """Version 2 added per-client phases and diffs, aggregate_s and the equivalence fields;
    a version-1 file simply has none of them (their defaults)."""
    return {**d, "schema_version": 2}


_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _from_v1}


def from_dict(data: Mapping[str, Any]) -> Results:
    if not isinstance(data, Mapping):
        raise ResultsFileError("not a gpubench results object")
    version = data.get("schema_version")
    if not isinstance(version, int):
        raise ResultsFileError("missing schema_version: not a gpubench results file")
    if version > SCHEMA_VERSION:
        raise ResultsFileError(
            f"schema_version {version} is newer than this gpubench understands "
            f"({SCHEMA_VERSION}); upgrade gpubench"
        )
    if version < 1:
        raise ResultsFileError(f"unknown schema_version {version}")
    d = dict(data)
    while d["schema_version"] < SCHEMA_VERSION:
        d = _UPGRADES[d["schema_version"]](d)
    try:
        modes = tuple(_mode_from_dict(m) for m in d.get("modes", ()))
        return Results(
            environment=dict(d.get("environment") or {}),
            config=RunRecord.of(d.get("config") or {}),
            modes=modes,
            devices=tuple(d.get("devices") or ()),
            monitor=d.get("monitor"),
            command=str(d.get("command") or ""),
            created_utc=str(d.get("created_utc") or ""),
            interrupted=bool(d.get("interrupted", False)),
            tool_version=str(d.get("tool_version") or ""),
            schema_version=SCHEMA_VERSION,
            memory_plan=d.get("memory_plan"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ResultsFileError):
            raise
        raise ResultsFileError(f"malformed results file: {exc}") from None


def read_json_file(p: Path) -> Any:
    """A JSON file's data; one that cannot be read, or is not JSON, is a one-line
    :class:`ResultsFileError` naming it."""
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultsFileError(f"cannot read {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ResultsFileError(f"{p} is not a text file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsFileError(f"{p} is not valid JSON (line {exc.lineno}: {exc.msg})") from None


def read_results(path: str | os.PathLike[str]) -> Results:
    p = Path(path)
    data = read_json_file(p)
    try:
        return from_dict(data)
    except ResultsFileError as exc:
        raise ResultsFileError(f"{p}: {exc}") from None


def write_results(results: Results, path: str | os.PathLike[str]) -> Path:
    """Write ``results`` as JSON with :func:`gpubench.output.write_atomic` (``WriteError``,
    one line naming where the JSON was kept, when it cannot)."""
    return write_atomic(path, to_json(results))
