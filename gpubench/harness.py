"""``compare()``: the same federated round under each mode, measured side by side.

The harness times rounds in the parent (``clock``, injected), runs FedAvg on every mode's
client states with the same function, checks each mode's result against serial's, tags the
monitor's samples with the phase running, and returns a :class:`Results`. It never prints:
progress goes to an optional callback.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Protocol

import torch

from gpubench import __version__
from gpubench.cases import load_case
from gpubench.config import RunConfig
from gpubench.devices import Device, default_tolerance, resolve_devices
from gpubench.environment import collect_environment
from gpubench.fl import fedavg, initial_global_state, sizes_for
from gpubench.modes import Mode, ModeFailure, NotApplicable, Plan, check_modes, mode_class
from gpubench.results import (
    PHASE_BETWEEN,
    PHASE_COLD_START,
    PHASE_ROUND,
    PHASE_WARMUP,
    STATUS_FAILED,
    STATUS_NOT_APPLICABLE,
    STATUS_OK,
    ClientTiming,
    DeviceStats,
    ModeResult,
    Results,
    RoundRecord,
    WorkerMemory,
    median,
)

Clock = Callable[[], float]
# progress(mode, phase, index, total): phase is cold_start / warmup / round / done / failed
Progress = Callable[[str, str, int, int], None]


class Sampler(Protocol):
    def start(self) -> None: ...
    def mark(self, mode: str | None, phase: str, round_index: int | None) -> None: ...
    def watch_pids(self, mode: str, pids: Any) -> None: ...
    def stop(self) -> None: ...
    def results_section(self) -> dict[str, Any]: ...
    def device_stats(self, mode: str) -> tuple[DeviceStats, ...]: ...


SamplerFactory = Callable[[Sequence[Device], float], Sampler]


@dataclass
class Prepared:
    """What every mode of a run shares: devices, client sizes, the global model."""

    config: RunConfig
    devices: tuple[Device, ...]
    all_devices: tuple[Device, ...]
    plan: Plan
    global_state: torch.Tensor
    weights: list[float]
    tolerance: float


def prepare(config: RunConfig) -> Prepared:
    """Validate everything a user can get wrong before anything starts."""
    config.validate()
    check_modes(config.modes)
    device_set = resolve_devices(config.devices)
    case = load_case(config.case)
    sizes = tuple(sizes_for(config.train, config.clients))
    global_state = initial_global_state(case, config.train.seed)
    plan = Plan(config, device_set.devices, sizes, int(global_state.numel()))
    tolerance = (
        config.tolerance
        if config.tolerance is not None
        else default_tolerance(device_set.devices)
    )
    return Prepared(
        config,
        device_set.devices,
        device_set.all_devices,
        plan,
        global_state,
        [float(s) for s in sizes],
        tolerance,
    )


@dataclass
class _Run:
    """A mode being measured."""

    name: str
    mode: Mode | None = None
    status: str = STATUS_OK
    error: str | None = None
    cold_start_s: float | None = None
    rounds: list[RoundRecord] = field(default_factory=list)
    memory: dict[int, WorkerMemory] = field(default_factory=dict)
    aggregate: torch.Tensor | None = None
    device_ids: tuple[str, ...] = ()
    workers: int = 0
    tolerance: float = 0.0  # set when the run is made; a mode may widen it on CUDA

    def fail(self, status: str, reason: str) -> None:
        self.status = status
        self.error = reason
        self.close()

    def close(self) -> None:
        if self.mode is not None:
            mode, self.mode = self.mode, None
            with contextlib.suppress(Exception):
                mode.close()


def _keep_peak(memory: dict[int, WorkerMemory], new: Sequence[WorkerMemory]) -> None:
    for m in new:
        old = memory.get(m.worker)
        memory[m.worker] = m if old is None else old.merged(m)


class _Harness:
    def __init__(
        self,
        prep: Prepared,
        clock: Clock,
        progress: Progress | None,
        sampler: Sampler | None,
    ) -> None:
        self.prep = prep
        self.clock = clock
        self.progress = progress or (lambda *a: None)
        self.sampler = sampler
        cfg = prep.config
        self.schedule = [(True, i) for i in range(cfg.warmup)] + [
            (False, i) for i in range(cfg.rounds)
        ]

    def mark(self, mode: str | None, phase: str, index: int | None) -> None:
        if self.sampler is not None:
            self.sampler.mark(mode, phase, index)

    def start(self, run: _Run) -> None:
        self.progress(run.name, PHASE_COLD_START, 0, 1)
        self.mark(run.name, PHASE_COLD_START, None)
        try:
            cls = mode_class(run.name)
            if self.prep.config.tolerance is None and any(d.is_cuda for d in self.prep.devices):
                # A mode that runs other (equally valid) kernels than serial says how much
                # wider its CUDA tolerance must be, e.g. vectorized's batched convolutions.
                run.tolerance *= float(getattr(cls, "cuda_tolerance_scale", 1.0))
            mode = cls(self.prep.plan)
            run.device_ids = mode.device_ids
            run.workers = mode.workers
            run.mode = mode
            t0 = self.clock()
            mode.start()
            run.cold_start_s = self.clock() - t0
            if self.sampler is not None:
                self.sampler.watch_pids(run.name, mode.pids())
        except NotApplicable as exc:
            run.fail(STATUS_NOT_APPLICABLE, str(exc))
        except Exception as exc:  # ModeFailure, or anything a case or backend raised
            run.fail(STATUS_FAILED, _reason(exc))
        if run.status != STATUS_OK:
            self.progress(run.name, "failed", 0, 1)

    def round(self, run: _Run, step: int) -> None:
        if run.mode is None:
            return
        warmup, index = self.schedule[step]
        phase = PHASE_WARMUP if warmup else PHASE_ROUND
        total = self.prep.config.warmup if warmup else self.prep.config.rounds
        self.progress(run.name, phase, index + 1, total)
        self.mark(run.name, phase, index)
        try:
            t0 = self.clock()
            out = run.mode.run_round(self.prep.global_state)
            aggregate = fedavg(out.states, self.prep.weights)
            elapsed = self.clock() - t0
            # Close the round's span now: what follows (closing the mode, the next mode's
            # start) must not count as this round's device time or energy.
            self.mark(run.name, PHASE_BETWEEN, None)
        except Exception as exc:
            run.fail(STATUS_FAILED, _reason(exc))
            self.progress(run.name, "failed", index + 1, total)
            return
        clients = tuple(
            sorted(
                (replace(c, start_s=c.start_s - t0, end_s=c.end_s - t0) for c in out.clients),
                key=lambda c: c.client,
            )
        )
        run.rounds.append(RoundRecord(len(run.rounds), warmup, elapsed, clients))
        if not warmup:
            _keep_peak(run.memory, out.memory)
            run.aggregate = aggregate

    def finish(self, run: _Run) -> None:
        run.close()
        self.mark(None, PHASE_BETWEEN, None)
        self.progress(run.name, "done" if run.status == STATUS_OK else "failed", 1, 1)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (ModeFailure, NotApplicable)):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def compare(
    config: RunConfig,
    *,
    clock: Clock = time.perf_counter,
    progress: Progress | None = None,
    sampler_factory: SamplerFactory | None = None,
    command: str = "",
    prepared: Prepared | None = None,
) -> Results:
    """Run every selected mode and return what was measured.

    Ctrl-C stops the workers and returns what was measured so far with ``interrupted`` set;
    the caller writes it and exits.
    """
    prep = prepared or prepare(config)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    environment = collect_environment(prep.all_devices)
    sampler = None
    if sampler_factory is not None and config.sample_interval_s:
        sampler = sampler_factory(prep.all_devices, config.sample_interval_s)
    harness = _Harness(prep, clock, progress, sampler)
    runs = [_Run(name, tolerance=prep.tolerance) for name in config.modes]
    interrupted = False
    if sampler is not None:
        sampler.start()
    try:
        if config.interleave:
            for run in runs:
                harness.start(run)
            for step in range(len(harness.schedule)):
                for run in runs:
                    harness.round(run, step)
            for run in runs:
                harness.finish(run)
        else:
            for run in runs:
                harness.start(run)
                for step in range(len(harness.schedule)):
                    harness.round(run, step)
                harness.finish(run)
    except KeyboardInterrupt:
        interrupted = True
        for run in runs:
            if run.mode is not None:
                run.fail(STATUS_FAILED, "interrupted (Ctrl-C)")
    finally:
        for run in runs:
            run.close()
        if sampler is not None:
            sampler.stop()
    modes = _mode_results(runs, prep, sampler)
    return Results(
        environment=environment,
        config={
            **config.to_dict(),
            "device_ids": [d.id for d in prep.devices],
            "tolerance_used": prep.tolerance,
            "samples": list(prep.plan.sizes),
            "state_size": prep.plan.state_size,
        },
        modes=modes,
        devices=tuple(d.to_dict() for d in prep.all_devices),
        monitor=sampler.results_section() if sampler is not None else None,
        command=command,
        created_utc=created,
        interrupted=interrupted,
        tool_version=__version__,
    )


def _mode_results(
    runs: Sequence[_Run], prep: Prepared, sampler: Sampler | None
) -> tuple[ModeResult, ...]:
    serial = next((r for r in runs if r.name == "serial" and r.status == STATUS_OK), None)
    serial_median = (
        median([r.time_s for r in serial.rounds if not r.warmup]) if serial else None
    )
    out = []
    for run in runs:
        measured = [r.time_s for r in run.rounds if not r.warmup]
        ok = run.status == STATUS_OK and bool(measured)
        if run.status == STATUS_OK and not measured:
            run.status, run.error = STATUS_FAILED, "no round was measured"
        speedup = diff = same = None
        if ok and serial_median is not None:
            speedup = serial_median / median(measured)
        if ok and serial is not None and serial.aggregate is not None and run.aggregate is not None:
            diff = float((run.aggregate - serial.aggregate).abs().max().item())
            same = diff <= run.tolerance
        stats: tuple[DeviceStats, ...] = ()
        if sampler is not None and run.status == STATUS_OK:
            stats = sampler.device_stats(run.name)
        out.append(
            ModeResult(
                name=run.name,
                status=run.status,
                error=run.error,
                devices=run.device_ids,
                workers=run.workers,
                cold_start_s=run.cold_start_s,
                warmup_times_s=tuple(r.time_s for r in run.rounds if r.warmup),
                round_times_s=tuple(measured),
                speedup_vs_serial=speedup,
                max_abs_diff_vs_serial=diff,
                same_result=same,
                rounds=tuple(run.rounds),
                device_stats=stats,
                worker_memory=tuple(run.memory[k] for k in sorted(run.memory)),
                extra={"tolerance": run.tolerance},
            )
        )
    return tuple(out)


# --- one mode at a time, for benchmark suites -----------------------------------------------


@dataclass
class ModeSession:
    mode: Mode
    prep: Prepared

    def run_round(self) -> tuple[float, torch.Tensor, list[ClientTiming]]:
        """One round plus FedAvg: (seconds, aggregated state, client timings)."""
        t0 = time.perf_counter()
        out = self.mode.run_round(self.prep.global_state)
        aggregate = fedavg(out.states, self.prep.weights)
        return time.perf_counter() - t0, aggregate, out.clients


@contextlib.contextmanager
def open_mode(config: RunConfig, name: str, prepared: Prepared | None = None) -> Iterator[ModeSession]:
    """Start one mode (cold start included) and close it, whatever happens."""
    prep = prepared or prepare(config)
    mode = mode_class(name)(prep.plan)
    try:
        mode.start()
        yield ModeSession(mode, prep)
    finally:
        mode.close()
