"""``sweep``: one comparison repeated over the values of one parameter.

Each point is a full :func:`gpubench.run.harness.compare` run written to its own results file;
:func:`summarize` derives, from those results alone, each mode's round time, time per
sample, speedup and device utilisation at every point, and serial's own change between the
smallest and the largest value (the notes' "raise the batch from 32 to 128 for 2-3x").

With ``accuracy_rounds`` R, every point also trains R progressing FedAvg rounds and scores
each aggregate on a held-out set (:mod:`gpubench.run.accuracy`): a faster round is then read next
to the local steps it takes and the accuracy it reaches, and, given a target accuracy, the
time to reach it (rounds needed times the point's measured serial round).

Every point is prepared (and its memory planned) before any runs: a point whose plan says it
cannot fit is *refused* with the plan's reason and never started; the other points still run.

A sweep of ``workers_per_device`` answers "how many clients per device": serial runs at every
point as the reference (the harness checks each mode's result against serial's in the same
invocation, and serial's round re-timed at each point carries the drift between points), and
:func:`per_device` adds, per mode and value, clients per second, its ratio to one worker per
device and to serial's clients per second at the same point, each worker's peak device and
host memory, and the **knee**: the smallest value within 5% of the mode's best clients/s over
serial's, with the ``client_resources`` that give it and the memory headroom left there. A
value that ran the same workers as a smaller one is marked as that setting again; a mode far
below serial at every value gets no knee.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gpubench.config import ConfigError, RunConfig
from gpubench.options import SWEEPABLE  # dest -> flag of each option a sweep may vary
from gpubench.output import write_atomic
from gpubench.results import STATUS_NOT_APPLICABLE, Results, write_results
from gpubench.run.op_files import keep_op_traces
from gpubench.sweep_summary import (
    KNEE_WITHIN,
    PER_DEVICE,
    REFERENCE,
    SUMMARY_FILE,
    ClientResources,
    Headroom,
    Knee,
    ModeRow,
    PerDevice,
    SerialEffect,
    SummaryPoint,
    SweepSummary,
    far_below,
    mode_rows,
    rank_knee,
    with_ratios,
)

PLOT_FILE = "summary.png"

CompareFn = Callable[..., Results]
AccuracyFn = Callable[..., Any]  # (config, rounds, target=...) -> AccuracyRun
Progress = Callable[[str, str, int, int], None]


@dataclass(frozen=True)
class Refusal:
    """A point the memory plan refused before anything of it started."""

    reason: str


@dataclass(frozen=True)
class SweepPoint:
    value: Any
    path: Path | None  # None: refused, nothing ran
    results: Results | None
    accuracy: dict[str, Any] | None = None  # AccuracyRun.to_dict(), or {"error": reason}
    refused: str | None = None  # the memory plan's reason, when the point was not run


@dataclass(frozen=True)
class Sweep:
    parameter: str  # the argparse dest, e.g. "batch_size"
    points: tuple[SweepPoint, ...]
    out_dir: Path
    command: str = ""
    created_utc: str = ""

    @property
    def interrupted(self) -> bool:
        return any(p.results is not None and p.results.interrupted for p in self.points)


def with_reference(parameter: str, config: RunConfig) -> RunConfig:
    """A workers-per-device point runs serial first, as its reference (see the module)."""
    if parameter != PER_DEVICE or "serial" in config.modes:
        return config
    return replace(config, modes=("serial", *config.modes))


PrepareFn = Callable[..., Any]  # (config, check_fit=...) -> Prepared


def prepare_points(
    points: Sequence[tuple[Any, RunConfig]], prepare_fn: PrepareFn | None = None
) -> list[Any]:
    """Each point's :class:`gpubench.run.prepare.Prepared`, or a :class:`Refusal` where its
    memory plan says it cannot fit. Every other error (bad input) is raised; so is a refusal
    of every point, since then nothing would run."""
    if prepare_fn is None:
        from gpubench.run.prepare import prepare

        prepare_fn = prepare
    out: list[Any] = []
    for _, config in points:
        prep = prepare_fn(config, check_fit=False)
        memory = getattr(prep, "memory", None)
        reason = memory.refusal() if memory is not None else None
        out.append(Refusal(reason) if reason else prep)
    refusals = [p for p in out if isinstance(p, Refusal)]
    if out and len(refusals) == len(out):
        raise ConfigError(refusals[0].reason)
    return out


def default_out_dir() -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("results") / f"sweep-{stamp}"


def point_filename(parameter: str, value: Any) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(value)).strip("_")[:60] or "value"
    return f"{parameter}-{safe}.json"


def _labelled(progress: Progress, label: str) -> Progress:
    def point_progress(mode: str, phase: str, index: int, total: int, **kw: Any) -> None:
        progress(f"{label} {mode}", phase, index, total, **kw)

    return point_progress


def run_sweep(  # noqa: C901 - the points' loop with its optional accuracy pass and its early stop
    parameter: str,
    points: Sequence[tuple[Any, RunConfig]],
    out_dir: Path,
    *,
    compare_fn: CompareFn | None = None,
    progress: Progress | None = None,
    command: str = "",
    prepared: Sequence[Any] | None = None,
    accuracy_rounds: int = 0,
    accuracy_target: float | None = None,
    accuracy_fn: AccuracyFn | None = None,
) -> Sweep:
    """Run ``compare`` at every point, writing each point's results as soon as it ends.

    With ``accuracy_rounds`` > 0, each point then trains that many progressing rounds and
    records the held-out accuracy after each (a failure there is recorded, not raised).
    Stops after a point that was interrupted (Ctrl-C); what was measured is kept.
    """
    if accuracy_rounds < 0:
        raise ValueError(f"accuracy rounds must be >= 0, got {accuracy_rounds}")
    if accuracy_rounds and accuracy_fn is None:
        from gpubench.run.accuracy import run_accuracy

        accuracy_fn = run_accuracy
    if compare_fn is None:
        from gpubench.run.harness import measure

        compare_fn = measure
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    done: list[SweepPoint] = []
    for i, (value, config) in enumerate(points):
        if prepared is not None and isinstance(prepared[i], Refusal):
            done.append(SweepPoint(value, None, None, refused=prepared[i].reason))
            continue
        point_progress = _labelled(progress, f"{parameter}={value}") if progress else None
        kwargs: dict[str, Any] = {"progress": point_progress, "command": command}
        if prepared is not None:
            kwargs["prepared"] = prepared[i]
        results = compare_fn(config, **kwargs)
        out = out_dir / point_filename(parameter, value)
        path = write_results(keep_op_traces(results, out), out)
        accuracy = None
        if accuracy_fn is not None and accuracy_rounds and not results.interrupted:
            if progress:
                progress(f"{parameter}={value} accuracy", "round", 1, 1)
            try:
                accuracy = accuracy_fn(config, accuracy_rounds, target=accuracy_target).to_dict()
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # the case's code raised: the timings still stand
                accuracy = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
            if progress:
                progress(f"{parameter}={value} accuracy", "done", 1, 1)
        done.append(SweepPoint(value, path, results, accuracy))
        if results.interrupted:
            break
    return Sweep(parameter, tuple(done), out_dir, command, created)


# --- what the points show -----------------------------------------------------------------------


def _samples_per_round(results: Results) -> int | None:
    samples = results.config.samples
    epochs = results.config.local_epochs or 1
    if not isinstance(samples, (list, tuple)) or not samples:
        return None
    return int(sum(samples)) * int(epochs)


def _utilisation(mode: Any) -> float | None:
    """Mean utilisation over the devices the mode used (the monitor's, when it ran)."""
    values = [s.util_mean_pct for s in mode.device_stats
              if s.device in mode.devices and s.util_mean_pct is not None]
    return sum(values) / len(values) if values else None


def _peak(values: Sequence[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _mode_row(results: Results, mode: Any) -> ModeRow:
    per_round = _samples_per_round(results)
    round_s = mode.median_round_s if mode.ok else None
    clients = results.config.clients
    return ModeRow(
        name=mode.name,
        status=mode.status,
        round_s=round_s,
        samples_per_round=per_round,
        per_sample_us=round_s / per_round * 1e6 if round_s and per_round else None,
        clients_per_s=clients / round_s if round_s and isinstance(clients, int) else None,
        speedup_vs_serial=speed.ratio if (speed := results.speed(mode.name)) else None,
        util_mean_pct=_utilisation(mode),
        same_result=mode.same_result,
        workers=mode.workers if mode.ok else None,
        # Each worker's peak: torch's reserved device memory (CUDA), the process's RSS.
        worker_device_bytes=_peak([w.max_reserved_bytes for w in mode.worker_memory]),
        worker_host_bytes=_peak([w.rss_bytes for w in mode.worker_memory]),
        error=mode.error,
    )


def _numeric(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def serial_effect(points: Sequence[SummaryPoint]) -> SerialEffect | None:
    """Serial at the smallest and the largest value: how much faster per sample and round."""
    rows = []
    for p in points:
        serial = p.mode("serial")
        if serial and serial.per_sample_us and serial.round_s:
            rows.append((p.value, serial.round_s, serial.per_sample_us))
    if len(rows) < 2:
        return None
    if all(_numeric(v) is not None for v, _, _ in rows):
        rows.sort(key=lambda r: _numeric(r[0]) or 0.0)
    (lo, ra, pa), (hi, rb, pb) = rows[0], rows[-1]
    return SerialEffect(lo, hi, (ra, rb), (pa, pb), ra / rb, pa / pb)


def _accuracy_row(point: SweepPoint, modes: Sequence[ModeRow]) -> dict[str, Any] | None:
    """The point's accuracy, with the time to the target from its measured serial round."""
    if point.accuracy is None or point.accuracy.get("error"):
        return point.accuracy
    row = dict(point.accuracy)
    serial = next((m for m in modes if m.name == "serial" and m.round_s), None)
    needed = row.get("rounds_to_target")
    row["time_to_target_s"] = needed * serial.round_s if serial and serial.round_s and needed \
        else None
    return row


def summarize(sweep: Sweep) -> SweepSummary:
    points = []
    for p in sweep.points:
        if p.results is None:
            points.append(SummaryPoint(p.value, refused=p.refused))
            continue
        modes = tuple(_mode_row(p.results, m) for m in p.results.modes)
        points.append(SummaryPoint(p.value, p.path.name if p.path else None,
                                   p.results.interrupted, modes, _accuracy_row(p, modes)))
    section = None
    if sweep.parameter == PER_DEVICE:
        points = with_ratios(points)
        section = per_device(points, _machine(sweep))
    return SweepSummary(
        parameter=sweep.parameter,
        flag=SWEEPABLE.get(sweep.parameter, sweep.parameter),
        values=tuple(p.value for p in sweep.points),
        points=tuple(points),
        serial_effect=serial_effect(points),
        refused={str(p.value): p.refused for p in sweep.points if p.refused},
        command=sweep.command,
        created_utc=sweep.created_utc,
        interrupted=sweep.interrupted,
        per_device=section,
    )


# --- how many clients per device ----------------------------------------------------------------


def _machine(sweep: Sweep) -> dict[str, Any]:
    """What the knee's resources and headroom need of the machine, from the first run."""
    first = next((p.results for p in sweep.points if p.results is not None), None)
    if first is None:
        return {}
    ids = list(first.device_ids)
    devices = [d for d in first.devices if isinstance(d, Mapping) and d.get("id") in ids]
    estimate = (first.memory_plan or {}).get("estimate") or {}
    options = first.config.other
    pipeline = options.get("pipeline")
    if not isinstance(pipeline, Mapping):
        pipeline = {}
    return {
        "case": first.config.case,
        "preset": pipeline.get("preset") if pipeline.get("preset") != "none" else None,
        "devices": ids,
        "cpu_slots": bool(ids) and all(i.startswith("cpu") for i in ids),
        "slot_cores": [len(d.get("cores") or ()) for d in devices if d.get("kind") != "cuda"],
        "device_total": {d["id"]: d.get("memory_total_bytes") for d in devices
                         if d.get("kind") == "cuda"},
        "host_available": estimate.get("host_available"),
        "cpu_count": first.environment.get("cpu_count"),
        "cpus_per_worker": options.get("cpus_per_worker"),
        "gpus_per_worker": options.get("gpus_per_worker"),
        "device_peak": {
            (str(p.value), m.name): {s.device: s.mem_peak_bytes for s in m.device_stats
                                     if s.mem_peak_bytes is not None}
            for p in sweep.points if p.results is not None for m in p.results.modes
        },
    }


def knee(
    rows: Sequence[tuple[Any, ModeRow]], within: float = KNEE_WITHIN
) -> dict[str, Any] | None:
    """The knee of one mode's rows (see :func:`gpubench.sweep_summary.rank_knee`)."""
    return rank_knee(rows, within)


def client_resources(k: int, machine: Mapping[str, Any]) -> ClientResources:
    """Ray/Flower ``client_resources`` that put ``k`` clients on each device of the run.

    num_gpus: 1/k on GPUs (0 on CPU slots); num_cpus: the cores there are for each client on
    a Ray with one CPU per core (a CPU slot's cores / k; on GPUs the host's cores shared by
    every client, at most 1), unless the run set --gpus-per-worker / --cpus-per-worker."""
    cpu = bool(machine.get("cpu_slots"))
    devices = max(1, len(machine.get("devices") or ()))
    gpus = machine.get("gpus_per_worker")
    cpus = machine.get("cpus_per_worker")
    if gpus is None:
        gpus = 0.0 if cpu else 1.0 / k
    if cpus is None:
        if cpu:
            cores = min(machine.get("slot_cores") or [1])
            cpus = cores / k
        else:
            cpus = min(1.0, (machine.get("cpu_count") or 1) / (k * devices))
    return ClientResources(num_gpus=0.0 if not gpus else _floor2(gpus), num_cpus=_floor2(cpus))


def _floor2(x: float) -> float:
    """Two decimals, rounded down (so k of them never ask for more than there is), >= 0.01."""
    return max(0.01, math.floor(float(x) * 100 + 1e-9) / 100)


def headroom(value: Any, row: ModeRow, machine: Mapping[str, Any]) -> Headroom:
    """Memory left at ``value``: each GPU's total less its measured peak (the monitor's, or the
    workers' reserved peaks summed: a floor of the use); on CPU slots the host memory available
    before the run less every worker's peak RSS."""
    workers = row.workers or 0
    if machine.get("cpu_slots") or not machine.get("device_total"):
        avail = machine.get("host_available")
        per = row.worker_host_bytes
        if avail is None or per is None:
            return Headroom("host")
        left = int(avail - per * workers)
        return Headroom("host", left, left / avail if avail else None)
    peaks = (machine.get("device_peak") or {}).get((str(value), row.name)) or {}
    lefts = []
    for dev, total in (machine.get("device_total") or {}).items():
        if not total:
            continue
        used = peaks.get(dev)
        if used is None and row.worker_device_bytes is not None:
            per_device = math.ceil(workers / max(1, len(machine["device_total"])))
            used = row.worker_device_bytes * per_device
        if used is not None:
            lefts.append((total - used, total))
    if not lefts:
        return Headroom("device")
    left, total = min(lefts)
    return Headroom("device", int(left), left / total)


def per_device(points: Sequence[SummaryPoint], machine: Mapping[str, Any]) -> PerDevice:
    """Per mode of a workers-per-device sweep (points carrying :func:`with_ratios`'s figures),
    its knee with the ``client_resources`` that give it and the memory left there; a mode far
    below serial at every value gets no knee, and is named instead. Serial is the reference,
    not a value of the sweep."""
    knees: dict[str, Knee | None] = {}
    below = far_below(points)
    for name in dict.fromkeys(m.name for p in points for m in p.modes):
        if name == REFERENCE or name in below:
            continue
        rows = mode_rows(points, name)
        if all(r.status == STATUS_NOT_APPLICABLE for _, r in rows):
            continue  # e.g. "+mps" on CPU slots: the table says why, there is no knee
        found = knee(rows)
        if found is None:
            knees[name] = None
            continue
        row = next(r for v, r in rows if v == found["value"])
        knees[name] = Knee(
            **found, client_resources=client_resources(int(found["value"]), machine),
            headroom=headroom(found["value"], row, machine),
            worker_device_bytes=row.worker_device_bytes, worker_host_bytes=row.worker_host_bytes,
            workers=row.workers)
    return PerDevice(cpu_slots=bool(machine.get("cpu_slots")),
                     devices=tuple(machine.get("devices") or ()), case=machine.get("case"),
                     preset=machine.get("preset"), knees=knees, far_below=below)


def write_summary(summary: SweepSummary, out_dir: Path) -> Path:
    return write_atomic(out_dir / SUMMARY_FILE, summary.to_json())
