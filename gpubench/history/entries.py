"""One history entry per run and mode: where it ran, what it ran, and the speedup it measured.

An entry is what a CI store keeps of a results file: the **testbed** (what decides a speedup
ratio besides the code: device kind and model, GPU UUIDs, driver, CUDA, torch, MPS, CPU
slots and CPU model), the **work** (what the gate requires to be equal:
:func:`gpubench.gate.keys.run_key`), the commit and time the results file records, and the
mode's speedup over serial with its interval (:mod:`gpubench.stats`, the one speed measure),
its rounds, its result check and other programs' load. A series is the entries of one
testbed, work and mode; a change of driver or torch starts another series rather than a
step in this one.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from gpubench import stats
from gpubench.gate.checks import result_of
from gpubench.gate.keys import run_key
from gpubench.gate.verdicts import RESULT_DIFFERS
from gpubench.results import ModeResult, Results, to_json

HISTORY_SCHEMA = 1
"""The version of one store line; a line of a newer version is skipped with a note."""


@dataclass(frozen=True)
class Testbed:
    """What decides a speedup ratio on a machine besides the code (None: not recorded)."""

    device_kind: str | None = None
    device_model: str | None = None
    devices: int | None = None
    gpu_uuids: str | None = None  # the run's GPUs, comma-separated, in device order
    driver: str | None = None
    cuda: str | None = None
    torch: str | None = None
    mps: str | None = None  # "off", or "on" (each process mode also ran under MPS)
    cpu_slots: str | None = None  # cores of each CPU slot, e.g. "1+1"
    cpu_model: str | None = None

    def describe(self) -> str:
        model = self.device_model or self.device_kind or "unknown devices"
        count = f"{self.devices}x " if self.devices else ""
        parts = [f"{count}{model}"]
        if self.cpu_slots:
            parts.append(f"slots {self.cpu_slots}")
        parts += [f"{label} {value}" for label, value in (
            ("driver", self.driver), ("CUDA", self.cuda), ("torch", self.torch),
            ("MPS", self.mps if self.mps == "on" else None))
            if value]  # fmt: skip
        return ", ".join(parts)


@dataclass(frozen=True)
class Work:
    """What the run trained: the fields :class:`gpubench.gate.keys.RunKey` compares."""

    case: str | None = None
    clients: int | None = None
    batch_size: int | None = None
    samples_per_client: str | None = None
    local_epochs: int | None = None

    def describe(self) -> str:
        parts = [f"{self.case or 'unnamed case'}"]
        parts += [f"{label} {value}" for label, value in (
            ("clients", self.clients), ("batch", self.batch_size),
            ("samples", self.samples_per_client), ("epochs", self.local_epochs))
            if value is not None]  # fmt: skip
        return ", ".join(parts)


@dataclass(frozen=True)
class Entry:
    """One mode of one run, as one line of the store."""

    run: str  # the run's id: a hash of its results (the same file added twice is one run)
    mode: str
    testbed: Testbed
    work: Work
    commit: str | None
    time: str  # the results file's created_utc
    status: str
    speedup: float | None  # None where no speedup could be computed
    low: float | None
    high: float | None
    level: float
    rounds: int
    paired: bool
    result: str  # the result check: same, differs, not reproducible: ..., not compared
    other_load_pct: float | None  # other programs' heaviest load on a device it depends on
    disturbed: str | None  # why its speed is no evidence (Results.disturbance), or None
    source: str = ""  # the results file it came from

    @property
    def series(self) -> tuple[Testbed, Work, str]:
        return self.testbed, self.work, self.mode

    @property
    def usable(self) -> bool:
        """Evidence for the change-point detection: measured, the same result, quiet."""
        return (self.speedup is not None and self.speedup > 0 and self.result != RESULT_DIFFERS
                and self.disturbed is None)  # fmt: skip

    @property
    def log_speedup(self) -> float:
        assert self.speedup is not None
        return math.log(self.speedup)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["history_schema"] = HISTORY_SCHEMA
        return data

    def to_line(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        """An entry from one parsed store line (``KeyError``/``TypeError``/``ValueError``
        when it is not one)."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["testbed"] = Testbed(**data["testbed"])
        values["work"] = Work(**data["work"])
        entry = cls(**values)
        if not isinstance(entry.run, str) or not isinstance(entry.mode, str):
            raise TypeError("run and mode must be text")
        if entry.speedup is not None and not isinstance(entry.speedup, (int, float)):
            raise TypeError("speedup must be a number")
        return entry


def run_id(results: Results) -> str:
    """The id of a run: the first 16 hex digits of the SHA-256 of its canonical JSON."""
    return hashlib.sha256(to_json(results).encode("utf-8")).hexdigest()[:16]


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _used_devices(results: Results) -> list[dict[str, Any]]:
    ids = set(results.device_ids)
    listed = [d for d in results.devices if isinstance(d, dict)]
    used = [d for d in listed if d.get("id") in ids]
    return used or listed


def _gpu_entries(results: Results) -> list[dict[str, Any]]:
    used = [d for d in _used_devices(results) if d.get("kind") == "cuda"]
    if used:
        return used
    gpus = results.environment.get("gpus") or []
    return [g if isinstance(g, dict) else {"name": g} for g in gpus]


def testbed_of(results: Results) -> Testbed:
    """The testbed a run measured on, from its environment, devices and configuration."""
    env = results.environment
    kind = results.device_kind
    gpus = _gpu_entries(results) if kind and "cuda" in kind else []
    names = sorted({str(g["name"]) for g in gpus if g.get("name")})
    uuids = [str(g["uuid"]) for g in gpus if g.get("uuid")]
    slots = [d.get("cores") for d in _used_devices(results) if d.get("kind") == "cpu"]
    cpu_model = _text(env.get("cpu_model") or env.get("cpu"))
    mps = results.config.get("mps") or (
        "on" if any(m.name.endswith("+mps") for m in results.modes) else "off")
    return Testbed(
        device_kind=kind,
        device_model=" + ".join(names) if names else (cpu_model if kind == "cpu" else None),
        devices=results.device_count,
        gpu_uuids=",".join(uuids) or None,
        driver=_text(env.get("driver")),
        cuda=_text(env.get("torch_cuda") or env.get("cuda")),
        torch=_text(env.get("torch")),
        mps=str(mps),
        cpu_slots="+".join(str(len(c)) for c in slots if isinstance(c, list)) or None,
        cpu_model=cpu_model,
    )


def work_of(results: Results) -> Work:
    key = run_key(results)
    return Work(key.case, key.clients, key.batch_size, key.samples_per_client, key.local_epochs)


def _other_load(results: Results, mode: ModeResult) -> float | None:
    loads = [pct for m in results.modes if m.name in (mode.name, stats.REFERENCE_MODE)
             for pct in m.other_load_pct.values()]  # fmt: skip
    return max(loads) if loads else None


def entry_of(results: Results, mode: ModeResult, run: str, source: str = "") -> Entry:
    """The entry of one mode of a run (its speedup None when none can be computed)."""
    speed = results.speed(mode.name)
    interval = speed.interval if speed is not None else None
    disturbance = results.disturbance(mode.name)
    return Entry(
        run=run,
        mode=mode.name,
        testbed=testbed_of(results),
        work=work_of(results),
        commit=_text(results.environment.get("git_commit")),
        time=results.created_utc,
        status=mode.status,
        speedup=interval.estimate if interval else None,
        low=interval.low if interval else None,
        high=interval.high if interval else None,
        level=stats.DEFAULT_LEVEL,
        rounds=speed.rounds.size if speed else 0,
        paired=bool(speed and speed.paired),
        result=result_of(mode),
        other_load_pct=_other_load(results, mode),
        disturbed=disturbance.describe() if disturbance else None,
        source=source,
    )


def entries_of(results: Results, source: str = "") -> list[Entry]:
    """Every mode of a run but serial (whose speedup over itself is 1 by definition)."""
    run = run_id(results)
    return [entry_of(results, m, run, source) for m in results.modes
            if m.name != stats.REFERENCE_MODE]  # fmt: skip
