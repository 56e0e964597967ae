"""A sweep's summary: the contract between ``gpubench.run.sweep`` and the pages that read it.

A sweep (:mod:`gpubench.run.sweep`) writes one results file per point and one ``summary.json``
that derives, from those results alone, each mode's round time, time per sample, speedup and
utilisation at every point; serial's change between the smallest and the largest value; and,
for a sweep of ``workers_per_device``, each mode's **knee** (the smallest value within
:data:`KNEE_WITHIN` of the mode's best throughput) with the ``client_resources`` that give it
and the memory left there.

The summary is typed (:class:`SweepSummary`) and versioned apart from the results files
(``schema_version``); :func:`load_sweep_summary` is its one reader: it upgrades older versions
and refuses a newer or malformed one with a one-line :class:`ResultsFileError`. Like
:mod:`gpubench.results`, this module imports nothing heavier than the standard library.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gpubench.results import STATUSES, ResultsFileError, json_safe, read_json_file

# Version 2: every mode row has every field (``speedup_vs_one`` is null outside a
# workers-per-device sweep). Version 1 wrote it only there, and its oldest files have no
# ``schema_version`` at all.
SWEEP_SUMMARY_VERSION = 2
SUMMARY_FILE = "summary.json"
PER_DEVICE = "workers_per_device"  # the parameter whose sweep has a per-device section
KNEE_WITHIN = 0.05  # the knee: the smallest value within 5% of the best throughput


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
    speedup_vs_one: float | None = None  # over one worker per device (workers-per-device only)
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
    """A mode's knee: the smallest value within ``within`` of its best throughput."""

    value: Any
    clients_per_s: float | None
    best_value: Any
    best_clients_per_s: float | None
    basis: str  # "speedup_vs_serial" or "clients_per_s": what throughput was compared
    within: float
    of_best: float
    client_resources: ClientResources
    headroom: Headroom
    worker_device_bytes: int | None = None
    worker_host_bytes: int | None = None
    workers: int | None = None


@dataclass(frozen=True)
class PerDevice:
    """A workers-per-device sweep's section: each mode's knee (None: no value succeeded)."""

    reference: str = "serial"
    cpu_slots: bool = False
    devices: tuple[str, ...] = ()
    case: str | None = None
    preset: str | None = None
    knees: Mapping[str, Knee | None] = field(default_factory=dict)


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
    return {**_flat(k), "client_resources": _flat(k.client_resources),
            "headroom": _flat(k.headroom)}


def _per_device_dict(info: PerDevice) -> dict[str, Any]:
    return {**_flat(info), "devices": list(info.devices),
            "knees": {n: None if k is None else _knee_dict(k) for n, k in info.knees.items()}}


# --- from JSON ----------------------------------------------------------------------------------


def _opt(kind: Callable[[Any], Any], value: Any) -> Any:
    return None if value is None else kind(value)


def _mode_row(d: Mapping[str, Any]) -> ModeRow:
    if d.get("status") not in STATUSES:
        raise ResultsFileError(f"mode {d.get('name')!r} has unknown status {d.get('status')!r}")
    floats = ("round_s", "per_sample_us", "clients_per_s", "speedup_vs_serial",
              "speedup_vs_one", "util_mean_pct")
    ints = ("samples_per_round", "workers", "worker_device_bytes", "worker_host_bytes")
    same = d.get("same_result")
    return ModeRow(
        name=str(d["name"]), status=str(d["status"]),
        same_result=None if same is None else bool(same), error=_opt(str, d.get("error")),
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
        client_resources=ClientResources(float(res["num_gpus"]), float(res["num_cpus"])),
        headroom=Headroom(str(room.get("of") or "host"), _opt(int, room.get("bytes")),
                          _opt(float, room.get("fraction"))),
        worker_device_bytes=_opt(int, d.get("worker_device_bytes")),
        worker_host_bytes=_opt(int, d.get("worker_host_bytes")),
        workers=_opt(int, d.get("workers")),
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
    )


def _from_v1(d: dict[str, Any]) -> dict[str, Any]:
    """Version 1 (and its oldest spelling, without ``schema_version``, ``refused`` or the
    per-worker columns) lacks only fields whose absence reads as null."""
    return {**d, "schema_version": 2}


# Upgrades from an older version to the next one; keyed by the old version.
_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _from_v1}


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
    while d["schema_version"] < SWEEP_SUMMARY_VERSION:
        d = _UPGRADES[d["schema_version"]](d)
    try:
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

