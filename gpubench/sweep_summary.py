"""A sweep's summary: the contract between ``gpubench.run.sweep`` and the pages that read it.

A sweep (:mod:`gpubench.run.sweep`) writes one results file per point and one ``summary.json``
that derives, from those results alone, each mode's round time, time per sample, speedup and
utilisation at every point; serial's change between the smallest and the largest value; and,
for a sweep of ``workers_per_device``, each mode's clients per second against serial's in the
same run, the **knee** (the smallest value within :data:`KNEE_WITHIN` of the mode's best such
ratio) with the ``client_resources`` that give it and the memory left there, and the modes
that stayed :data:`FAR_BELOW` serial at every value (named, never recommended).

The per-device arithmetic that needs nothing but the rows (:func:`with_ratios`,
:func:`rank_knee`, :func:`far_below`) lives here, so that the sweep that writes a summary and
the upgrade of an older one derive the same figures.

The summary is typed (:class:`SweepSummary`) and versioned apart from the results files
(``schema_version``); :func:`load_sweep_summary` is its one reader: it upgrades older versions
and refuses a newer or malformed one with a one-line :class:`ResultsFileError`. Like
:mod:`gpubench.results`, this module imports nothing heavier than the standard library.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from gpubench.results import STATUS_OK, STATUSES, ResultsFileError, json_safe, read_json_file

# Version 3: one metric per table in a workers-per-device sweep: ``speedup_vs_one`` is the
# ratio of clients/s (it was a ratio of speedups over serial), each row has
# ``clients_vs_serial`` (its clients/s over serial's in the same run: what ranks the knee) and
# ``same_workers_as`` (a smaller value that ran the same workers), and ``per_device`` names the
# modes ``far_below`` serial. Version 2: every mode row has every field (``speedup_vs_one`` is
# null outside a workers-per-device sweep). Version 1 wrote it only there, and its oldest files
# have no ``schema_version`` at all.
SWEEP_SUMMARY_VERSION = 3
SUMMARY_FILE = "summary.json"
PER_DEVICE = "workers_per_device"  # the parameter whose sweep has a per-device section
REFERENCE = "serial"  # the mode every point runs beside the others, the reference of the ratios
KNEE_WITHIN = 0.05  # the knee: the smallest value within 5% of the best throughput
# A mode whose clients/s stays under half of serial's (in the same run) at every value is far
# below serial: the section says so and recommends no client_resources from it.
FAR_BELOW = 0.5


@dataclass(frozen=True)
class ModeRow:
    """One mode at one point of the sweep."""

    name: str
    status: str
    round_s: float | None = None  # median round, None unless the mode ran
    samples_per_round: int | None = None
    per_sample_us: float | None = None
    clients_per_s: float | None = None
    speedup_vs_serial: float | None = None
    # Workers-per-device sweeps only: clients/s over the mode's at its first value (one worker
    # per device, normally), and over serial's clients/s at the same point (its own run, so the
    # machine's drift between points cancels).
    speedup_vs_one: float | None = None
    clients_vs_serial: float | None = None
    # A smaller value that ran this mode with the same number of workers (more workers per
    # device than there are clients): this row measured that setting again, shown once.
    same_workers_as: Any = None
    util_mean_pct: float | None = None  # over the devices the mode used
    same_result: bool | None = None  # computed serial's result (None: not checked)
    workers: int | None = None
    worker_device_bytes: int | None = None  # each worker's peak reserved device memory
    worker_host_bytes: int | None = None  # each worker's peak RSS
    error: str | None = None


@dataclass(frozen=True)
class SummaryPoint:
    """One value of the swept parameter: its modes, or the memory plan's refusal."""

    value: Any
    file: str | None = None  # the point's results file (its name), None when refused
    interrupted: bool = False
    modes: tuple[ModeRow, ...] = ()
    # gpubench.run.accuracy.AccuracyRun's fields and ``time_to_target_s``, or {"error": reason}
    accuracy: Mapping[str, Any] | None = None
    refused: str | None = None

    def mode(self, name: str) -> ModeRow | None:
        return next((m for m in self.modes if m.name == name), None)


@dataclass(frozen=True)
class SerialEffect:
    """Serial at the smallest and the largest value of the sweep."""

    from_value: Any
    to_value: Any
    round_s: tuple[float, float]
    per_sample_us: tuple[float, float]
    round_speedup: float
    per_sample_speedup: float


@dataclass(frozen=True)
class ClientResources:
    """Ray/Flower ``client_resources`` that put the knee's clients on each device."""

    num_gpus: float
    num_cpus: float

    def as_argument(self) -> str:
        """As Flower/Ray users write it: ``client_resources={"num_gpus": .., "num_cpus": ..}``."""
        return (f'client_resources={{"num_gpus": {self.num_gpus:g}, '
                f'"num_cpus": {self.num_cpus:g}}}')


@dataclass(frozen=True)
class Headroom:
    """Memory left at the knee: of the device (GPUs) or of the host (CPU slots)."""

    of: str  # "device" or "host"
    bytes: int | None = None
    fraction: float | None = None


@dataclass(frozen=True)
class Knee:
    """A mode's knee: the smallest value within ``within`` of its best throughput, the
    throughput being ``basis``: clients/s over serial's in the same run where every value has
    it ("clients_vs_serial"), else clients/s ("clients_per_s")."""

    value: Any
    clients_per_s: float | None
    best_value: Any
    best_clients_per_s: float | None
    basis: str  # "clients_vs_serial" or "clients_per_s" (version 2: "speedup_vs_serial")
    within: float
    of_best: float
    # None: an older summary's knee moved when it was upgraded, and its file recorded the
    # resources of the old knee only (rerun the sweep for them).
    client_resources: ClientResources | None
    headroom: Headroom
    worker_device_bytes: int | None = None
    worker_host_bytes: int | None = None
    workers: int | None = None
    clients_vs_serial: float | None = None


@dataclass(frozen=True)
class PerDevice:
    """A workers-per-device sweep's section: each mode's knee (None: no value succeeded), and
    the modes far below serial at every value (their best clients/s over serial's), which
    have no knee."""

    reference: str = "serial"
    cpu_slots: bool = False
    devices: tuple[str, ...] = ()
    case: str | None = None
    preset: str | None = None
    knees: Mapping[str, Knee | None] = field(default_factory=dict)
    far_below: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep measured at each value of one parameter, derived from its results files
    alone (``summary.json``); read one with :func:`load_sweep_summary`."""

    parameter: str  # the argparse dest, e.g. "batch_size"
    flag: str  # its option, e.g. "--batch-size"
    values: tuple[Any, ...]
    points: tuple[SummaryPoint, ...]
    serial_effect: SerialEffect | None = None
    refused: Mapping[str, str] = field(default_factory=dict)  # str(value) -> the plan's reason
    command: str = ""
    created_utc: str = ""
    interrupted: bool = False
    per_device: PerDevice | None = None  # a workers-per-device sweep's knees
    schema_version: int = SWEEP_SUMMARY_VERSION

    @property
    def mode_names(self) -> list[str]:
        """Every mode of the sweep, in the order they first appear."""
        names: list[str] = []
        for p in self.points:
            names.extend(m.name for m in p.modes if m.name not in names)
        return names

    def table_rows(self) -> list[tuple[SummaryPoint, ModeRow | None]]:
        """The rows of the sweep's table, point by point: each mode's, or one row without a
        mode for a refused point. Every page that tables the sweep reads these."""
        rows: list[tuple[SummaryPoint, ModeRow | None]] = []
        for p in self.points:
            if p.refused:
                rows.append((p, None))
            rows.extend((p, m) for m in p.modes)
        return rows

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "parameter": self.parameter,
            "flag": self.flag,
            "values": list(self.values),
            "points": [_point_dict(p) for p in self.points],
            "serial_effect": _effect_dict(self.serial_effect),
            "refused": dict(self.refused),
            "command": self.command,
            "created_utc": self.created_utc,
            "interrupted": self.interrupted,
        }
        if self.per_device is not None:
            out["per_device"] = _per_device_dict(self.per_device)
        return json_safe(out)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


# --- to JSON ------------------------------------------------------------------------------------


def _flat(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _point_dict(p: SummaryPoint) -> dict[str, Any]:
    return {**_flat(p), "modes": [_flat(m) for m in p.modes],
            "accuracy": None if p.accuracy is None else dict(p.accuracy)}


def _effect_dict(e: SerialEffect | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"from": e.from_value, "to": e.to_value, "round_s": list(e.round_s),
            "per_sample_us": list(e.per_sample_us), "round_speedup": e.round_speedup,
            "per_sample_speedup": e.per_sample_speedup}


def _knee_dict(k: Knee) -> dict[str, Any]:
    res = k.client_resources
    return {**_flat(k), "client_resources": None if res is None else _flat(res),
            "headroom": _flat(k.headroom)}


def _per_device_dict(info: PerDevice) -> dict[str, Any]:
    return {**_flat(info), "devices": list(info.devices), "far_below": dict(info.far_below),
            "knees": {n: None if k is None else _knee_dict(k) for n, k in info.knees.items()}}


# --- from JSON ----------------------------------------------------------------------------------


def _opt(kind: Callable[[Any], Any], value: Any) -> Any:
    return None if value is None else kind(value)


def _mode_row(d: Mapping[str, Any]) -> ModeRow:
    if d.get("status") not in STATUSES:
        raise ResultsFileError(f"mode {d.get('name')!r} has unknown status {d.get('status')!r}")
    floats = ("round_s", "per_sample_us", "clients_per_s", "speedup_vs_serial",
              "speedup_vs_one", "clients_vs_serial", "util_mean_pct")
    ints = ("samples_per_round", "workers", "worker_device_bytes", "worker_host_bytes")
    same = d.get("same_result")
    return ModeRow(
        name=str(d["name"]), status=str(d["status"]),
        same_result=None if same is None else bool(same), error=_opt(str, d.get("error")),
        same_workers_as=d.get("same_workers_as"),
        **{k: _opt(float, d.get(k)) for k in floats}, **{k: _opt(int, d.get(k)) for k in ints},
    )


def _point(d: Mapping[str, Any]) -> SummaryPoint:
    accuracy = d.get("accuracy")
    if accuracy is not None and not isinstance(accuracy, Mapping):
        raise ResultsFileError(f"point {d.get('value')!r}: accuracy is not an object")
    return SummaryPoint(
        value=d["value"], file=_opt(str, d.get("file")), interrupted=bool(d.get("interrupted")),
        modes=tuple(_mode_row(m) for m in d.get("modes") or ()),
        accuracy=None if accuracy is None else dict(accuracy), refused=_opt(str, d.get("refused")),
    )


def _effect(d: Mapping[str, Any] | None) -> SerialEffect | None:
    if not d:
        return None
    (ra, rb), (pa, pb) = d["round_s"], d["per_sample_us"]
    return SerialEffect(d["from"], d["to"], (float(ra), float(rb)), (float(pa), float(pb)),
                        float(d["round_speedup"]), float(d["per_sample_speedup"]))


def _knee(d: Mapping[str, Any]) -> Knee:
    res, room = d["client_resources"], d.get("headroom") or {}
    return Knee(
        value=d["value"], clients_per_s=_opt(float, d.get("clients_per_s")),
        best_value=d.get("best_value", d["value"]),
        best_clients_per_s=_opt(float, d.get("best_clients_per_s")),
        basis=str(d.get("basis") or "clients_per_s"), within=float(d.get("within", KNEE_WITHIN)),
        of_best=float(d.get("of_best", 1.0)),
        client_resources=None if res is None else ClientResources(float(res["num_gpus"]),
                                                                  float(res["num_cpus"])),
        headroom=Headroom(str(room.get("of") or "host"), _opt(int, room.get("bytes")),
                          _opt(float, room.get("fraction"))),
        worker_device_bytes=_opt(int, d.get("worker_device_bytes")),
        worker_host_bytes=_opt(int, d.get("worker_host_bytes")),
        workers=_opt(int, d.get("workers")),
        clients_vs_serial=_opt(float, d.get("clients_vs_serial")),
    )


def _per_device(d: Mapping[str, Any] | None) -> PerDevice | None:
    if d is None:
        return None
    if not isinstance(d, Mapping):
        raise ResultsFileError("per_device is not an object")
    knees = d.get("knees") or {}
    return PerDevice(
        reference=str(d.get("reference") or "serial"), cpu_slots=bool(d.get("cpu_slots")),
        devices=tuple(str(x) for x in d.get("devices") or ()), case=_opt(str, d.get("case")),
        preset=_opt(str, d.get("preset")),
        knees={str(n): None if k is None else _knee(k) for n, k in knees.items()},
        far_below={str(n): float(v) for n, v in (d.get("far_below") or {}).items()},
    )


def _from_v1(d: dict[str, Any]) -> dict[str, Any]:
    """Version 1 (and its oldest spelling, without ``schema_version``, ``refused`` or the
    per-worker columns) lacks only fields whose absence reads as null."""
    return {**d, "schema_version": 2}


def _from_v2(d: dict[str, Any]) -> dict[str, Any]:
    """Version 2's workers-per-device rows had ``speedup_vs_one`` as a ratio of speedups over
    serial and knees ranked by the speedup over serial. The rows hold what version 3 derives
    (clients/s, workers, serial's clients/s at each point), so it is derived again: the ratios,
    the values that ran the same workers, the knees and the modes far below serial. A knee that
    stays where it was keeps its ``client_resources`` and headroom; one that moved gets none
    (the file recorded the old knee's machine figures only) and the memory of its own row."""
    if d.get("parameter") != PER_DEVICE:
        return {**d, "schema_version": 3}
    points = with_ratios([_point(p) for p in d.get("points") or ()])
    out = {**d, "schema_version": 3, "points": [_point_dict(p) for p in points]}
    old = d.get("per_device")
    if not isinstance(old, Mapping):
        return out
    knees: dict[str, Any] = {}
    below = far_below(points)
    for name, was in (old.get("knees") or {}).items():
        if name in below:
            continue
        found = rank_knee(mode_rows(points, name))
        if found is None:
            knees[name] = None
            continue
        row = next(r for v, r in mode_rows(points, name) if v == found["value"])
        kept = isinstance(was, Mapping) and was.get("value") == found["value"]
        room = (was or {}).get("headroom") or {}
        knees[name] = {
            **found, "workers": row.workers, "worker_device_bytes": row.worker_device_bytes,
            "worker_host_bytes": row.worker_host_bytes,
            "client_resources": was["client_resources"] if kept else None,
            "headroom": room if kept else {"of": room.get("of") or "host"},
        }
    return {**out, "per_device": {**old, "knees": knees, "far_below": below}}


# Upgrades from an older version to the next one; keyed by the old version.
_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _from_v1, 2: _from_v2}


# --- clients per device: what the rows alone give -----------------------------------------------


def succeeded(row: ModeRow | None) -> bool:
    """Whether the row ran, computed serial's result (or was not checked) and has a rate."""
    if not row:
        return False
    return row.status == STATUS_OK and row.same_result is not False and bool(row.clients_per_s)


def mode_rows(points: Sequence[SummaryPoint], name: str) -> list[tuple[Any, ModeRow]]:
    """(value, row) of one mode at every point, smallest value first."""
    rows = [(p.value, m) for p in points for m in p.modes if m.name == name]
    return sorted(rows, key=lambda vr: float(vr[0]))


def _names(points: Sequence[SummaryPoint]) -> list[str]:
    names: list[str] = []
    for p in points:
        names.extend(m.name for m in p.modes if m.name not in names)
    return names


def with_ratios(points: Sequence[SummaryPoint]) -> list[SummaryPoint]:
    """The points of a workers-per-device sweep with each mode's ratios set: clients/s over
    serial's at the same point, clients/s over the mode's first distinct value that succeeded,
    and ``same_workers_as`` where a smaller value ran the same workers (no ratio there: it is
    shown once, at the smaller value). Serial is the reference, not a value."""
    serial = {p.value: s.clients_per_s for p in points
              if (s := p.mode(REFERENCE)) is not None and succeeded(s)}
    updated: dict[tuple[str, Any], ModeRow] = {}
    for name in _names(points):
        if name == REFERENCE:
            continue
        first: float | None = None
        seen: dict[int, Any] = {}
        for value, row in mode_rows(points, name):
            again = None if row.workers is None else seen.setdefault(row.workers, value)
            clean = replace(row, speedup_vs_one=None, clients_vs_serial=None,
                            same_workers_as=None if again == value else again)
            if clean.same_workers_as is None and succeeded(row):
                rate = row.clients_per_s or 0.0
                first = first or rate
                base = serial.get(value)
                clean = replace(clean, speedup_vs_one=rate / first,
                                clients_vs_serial=rate / base if base else None)
            updated[(name, value)] = clean
    return [replace(p, modes=tuple(updated.get((m.name, p.value), m) for m in p.modes))
            for p in points]


def _throughput(row: ModeRow, basis: str) -> float | None:
    value = getattr(row, basis)
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def rank_knee(
    rows: Sequence[tuple[Any, ModeRow]], within: float = KNEE_WITHIN
) -> dict[str, Any] | None:
    """The smallest value whose throughput is within ``within`` of the best, over the values
    that succeeded and ran more workers than every smaller one. ``rows``: (value, mode row).

    Throughput is the clients/s over serial's clients/s at the same point (serial ran beside
    the mode in the same run, so drift between points cancels) where every such value has it,
    else clients/s."""
    ok: list[tuple[Any, ModeRow]] = []
    seen: set[int] = set()
    for value, row in sorted(rows, key=lambda vr: float(vr[0])):
        if row.same_workers_as is not None or (row.workers is not None and row.workers in seen):
            continue
        if row.workers is not None:
            seen.add(row.workers)
        if succeeded(row):
            ok.append((value, row))
    if not ok:
        return None
    basis = "clients_vs_serial" if all(_throughput(r, "clients_vs_serial") for _, r in ok) \
        else "clients_per_s"
    best_value, best = max(ok, key=lambda vr: _throughput(vr[1], basis) or 0.0)
    top = _throughput(best, basis) or 0.0
    near = [(v, r) for v, r in ok if (_throughput(r, basis) or 0.0) >= (1 - within) * top]
    value, row = min(near, key=lambda vr: float(vr[0]))
    return {"value": value, "clients_per_s": row.clients_per_s, "best_value": best_value,
            "best_clients_per_s": best.clients_per_s, "basis": basis, "within": within,
            "of_best": (_throughput(row, basis) or 0.0) / top,
            "clients_vs_serial": row.clients_vs_serial}


def far_below(points: Sequence[SummaryPoint], limit: float = FAR_BELOW) -> dict[str, float]:
    """The modes whose clients/s stayed under ``limit`` of serial's at every value that
    succeeded, with their best ratio (points carrying :func:`with_ratios`'s figures)."""
    out: dict[str, float] = {}
    for name in _names(points):
        ratios = [r.clients_vs_serial for _, r in mode_rows(points, name)
                  if name != REFERENCE and r.clients_vs_serial is not None]
        if ratios and max(ratios) < limit:
            out[name] = max(ratios)
    return out


def is_sweep_summary(data: Any) -> bool:
    """Whether JSON data is meant as a sweep's summary (a results file has no ``points``)."""
    return isinstance(data, Mapping) and "points" in data and "parameter" in data


def sweep_summary_from_dict(data: Any) -> SweepSummary:
    if not is_sweep_summary(data):
        raise ResultsFileError("not a gpubench sweep summary")
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ResultsFileError(f"unknown sweep summary schema_version {version!r}")
    if version > SWEEP_SUMMARY_VERSION:
        raise ResultsFileError(
            f"sweep summary schema_version {version} is newer than this gpubench understands "
            f"({SWEEP_SUMMARY_VERSION}); upgrade gpubench")
    d = {**data, "schema_version": version}
    try:
        while d["schema_version"] < SWEEP_SUMMARY_VERSION:
            d = _UPGRADES[d["schema_version"]](d)
        points = tuple(_point(p) for p in d["points"])
        return SweepSummary(
            parameter=str(d["parameter"]), flag=str(d.get("flag") or d["parameter"]),
            values=tuple(d.get("values") or (p.value for p in points)), points=points,
            serial_effect=_effect(d.get("serial_effect")),
            refused={str(k): str(v) for k, v in (d.get("refused") or {}).items()},
            command=str(d.get("command") or ""), created_utc=str(d.get("created_utc") or ""),
            interrupted=bool(d.get("interrupted")), per_device=_per_device(d.get("per_device")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, ResultsFileError):
            raise
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise ResultsFileError(f"malformed sweep summary: {what}") from None


def load_sweep_summary(
    source: str | os.PathLike[str] | Mapping[str, Any] | SweepSummary,
) -> SweepSummary:
    """A sweep's summary from its folder, its ``summary.json`` or its JSON data: the one
    reader. Older versions are upgraded; a newer, malformed or unreadable one is a one-line
    :class:`ResultsFileError` (naming the file where there is one)."""
    if isinstance(source, SweepSummary):
        return source
    if isinstance(source, Mapping):
        return sweep_summary_from_dict(source)
    p = Path(source)
    if p.is_dir():
        p = p / SUMMARY_FILE
    data = read_json_file(p)
    try:
        return sweep_summary_from_dict(data)
    except ResultsFileError as exc:
        raise ResultsFileError(f"{p}: {exc}") from None

