"""``compare()``: the same federated round under each mode, measured side by side.

The harness times rounds in the parent (``clock``, injected), runs FedAvg on every mode's
client states with the same function, checks each mode's result against serial's, tags the
monitor's samples with the phase running, and returns a :class:`Results`. It never prints:
progress goes to an optional callback.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np
import torch

from gpubench.config import RunConfig
from gpubench.machine.cuda import release_device_memory
from gpubench.machine.devices import Device
from gpubench.machine.isolation import release_free_heap
from gpubench.modes import (
    Mode,
    ModeFailure,
    NotApplicable,
    RoundOutput,
    interleaved_blocks,
    mode_class,
    mode_facts,
)
from gpubench.modes.base import first_line
from gpubench.monitor.environment import collect_environment
from gpubench.monitor.timeline import OtherLoadStats
from gpubench.results import (
    OTHER_LOAD_LIMIT_PCT,
    PHASE_BETWEEN,
    PHASE_COLD_START,
    PHASE_PROFILED,
    PHASE_REPLACED,
    PHASE_ROUND,
    PHASE_WARMUP,
    STATUS_FAILED,
    STATUS_NOT_APPLICABLE,
    STATUS_OK,
    Adjudication,
    ClientTiming,
    DeviceStats,
    ModeExtra,
    ModeResult,
    ProfiledRound,
    Results,
    RoundRecord,
    RunRecord,
    WorkerMemory,
    median,
)
from gpubench.run import memplan
from gpubench.run.adjudicate import adjudicate_mode, settled
from gpubench.run.equivalence import Comparison, Ledger, consistency_diff
from gpubench.run.op_files import TEMP_PREFIX
from gpubench.run.prepare import ModeSession, Prepared, fedavg, fedavg_update, open_mode, prepare
from gpubench.run.ticker import ClientTicker
from gpubench.train.updates import FINGERPRINT_SIZE, FedAvgUpdate, LastUpdates
from gpubench.version import __version__

__all__ = ["ModeSession", "Prepared", "compare", "fedavg_update", "measure", "monitor_for",
           "open_mode", "prepare"]

Clock = Callable[[], float]
# progress(mode, phase, index, total): phase is cold_start / warmup / round / done / failed
Progress = Callable[[str, str, int, int], None]


class Sampler(Protocol):
    def start(self) -> None: ...
    def mark(self, mode: str | None, phase: str, round_index: int | None) -> int | None: ...
    def retag(self, span: int, phase: str) -> None: ...
    def other_load(self, span: int) -> dict[str, float | None]: ...
    def mode_other_load(self, mode: str, devices: Sequence[str]) -> OtherLoadStats: ...
    def watch_pids(self, mode: str, pids: Any) -> None: ...
    def unwatch_pids(self, mode: str) -> None: ...
    def stop(self) -> None: ...
    def results_section(self) -> dict[str, Any]: ...
    def device_stats(self, mode: str) -> tuple[DeviceStats, ...]: ...


SamplerFactory = Callable[[Sequence[Device], float], Sampler]


@dataclass
class _Run:
    """A mode being measured."""

    name: str
    mode: Mode | None = None
    status: str = STATUS_OK
    error: str | None = None
    error_detail: str | None = None
    cold_start_s: float | None = None
    rounds: list[RoundRecord] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)  # the schedule step of each round
    spans: list[int | None] = field(default_factory=list)  # the monitor's span of each round
    memory: dict[int, WorkerMemory] = field(default_factory=dict)
    device_ids: tuple[str, ...] = ()
    workers: int = 0
    tolerance: float = 0.0  # the run's until the mode starts, then its own (prep.tolerance_of)
    started: bool = False  # started once (serial starts again in later blocks)
    extra: dict[str, Any] = field(default_factory=dict)  # the mode's own record (extra_record)
    not_reproducible: str | None = None
    startup: dict[str, float] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)
    profiled: ProfiledRound | None = None  # --profile-ops

    def round_at(self, step: int) -> tuple[RoundRecord, int | None] | None:
        """The round measured at ``step`` and its monitor span, if any."""
        if step not in self.steps:
            return None
        i = self.steps.index(step)
        return self.rounds[i], self.spans[i]

    def record(self, record: RoundRecord, step: int, span: int | None) -> None:
        """Add a round; a step measured again takes its earlier round's place."""
        if step in self.steps:
            i = self.steps.index(step)
            self.rounds[i], self.spans[i] = record, span
            return
        self.rounds.append(record)
        self.steps.append(step)
        self.spans.append(span)

    def fail(self, status: str, reason: str, detail: str | None = None) -> None:
        """Record the failure; the caller closes the mode once the exception is gone (its
        traceback holds the frames, and with them the model and activations on the device)."""
        self.status = status
        self.error = reason
        self.error_detail = detail

    def close(self) -> None:
        if self.mode is not None:
            self.extra.update(self.mode.extra_record())
            mode, self.mode = self.mode, None
            with contextlib.suppress(Exception):
                mode.close()


def _keep_peak(memory: dict[int, WorkerMemory], new: Sequence[WorkerMemory]) -> None:
    for m in new:
        old = memory.get(m.worker)
        memory[m.worker] = m if old is None else old.merged(m)


@dataclass(frozen=True)
class Block:
    """Modes that take turns round by round over the steps ``first_step ..`` (warm-up rounds
    then measured ones); blocks run one after another, each mode closed at its block's end.

    A step is a position in the whole run: it names the round's global model and is the
    ``RoundRecord.index`` of every round run at it, so that the rounds of two modes run side
    by side share an index (``gpubench.results.paired_rounds`` pairs them by it).
    """

    modes: tuple[str, ...]
    first_step: int
    retime: bool = False  # serial timed again at the end of a sequential run


def plan_blocks(config: RunConfig) -> tuple[Block, ...]:
    """The run's schedule. Interleaved: the groups of :func:`gpubench.modes.interleaved_blocks`,
    each over steps of its own. Sequential: each mode alone over the same steps (their results
    compare step by step), then serial once more over new steps, so that a change of the
    machine's speed during the run shows in serial's rounds."""
    per = config.warmup + config.rounds
    if config.interleave:
        groups = interleaved_blocks(config.modes)
        return tuple(Block(g, i * per) for i, g in enumerate(groups))
    blocks = [Block((m,), 0) for m in config.modes]
    if "serial" in config.modes and len(config.modes) > 1:
        blocks.append(Block(("serial",), per, retime=True))
    return tuple(blocks)


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
        self.per_block = cfg.warmup + cfg.rounds
        self.ledger = Ledger()
        self.sketch = prep.sketch
        self.reference = "serial" if "serial" in cfg.modes else None
        self.last = LastUpdates(self.reference)
        self.gaps: dict[str, tuple[float, float]] = {}  # mode -> its last aggregate's gap
        # Round sets measured again because other programs' load disturbed them.
        self.replaced: list[dict[str, Any]] = []
        # Rounds' start times count from here: the monitor's t0 once it started (its spans and
        # timeline are on that clock), else the run's start.
        self.origin = clock()
        self.profile_root: str | None = None  # --profile-ops: where the workers' traces go

    def run_block(self, block: Block, runs: Sequence[_Run]) -> None:
        """Start the block's modes, run its steps round by round, close them."""
        if self.prep.config.interleave:  # each block compares its own last step
            self.last = LastUpdates(self.reference)
        runs = [r for r in runs if r.status == STATUS_OK]  # one that failed earlier is done
        for run in runs:
            self.start(run)
        steps = list(range(block.first_step, block.first_step + self.per_block))
        again: list[int] = []
        budget = self.prep.config.rounds  # at most as many extra sets as measured rounds
        while steps:
            step = steps.pop(0)
            for run in runs:
                self.round(run, step, block)
            why = self.disturbed(runs, step)
            if why is not None:
                if budget > 0:
                    budget -= 1
                    self.replace_set(runs, step, why)
                    again.append(step)
                else:
                    self.replaced.append({"step": step, "reason": why, "kept": True})
            if not steps:  # the disturbed sets once more, after the others (a passing
                steps, again = again, []  # disturbance has had time to end)
        if self.prep.config.profile_ops and not block.retime:
            for run in runs:
                self.profile(run, block.first_step + self.per_block - 1)
        for run in runs:
            self.finish(run)
        self.gaps.update(self.last.gaps)

    def disturbed(self, runs: Sequence[_Run], step: int) -> str | None:
        """Why the measured round set at ``step`` is no evidence: another program took more
        than ``OTHER_LOAD_LIMIT_PCT`` of a device while one of its modes ran there."""
        for run in runs:
            got = run.round_at(step)
            if got is None or got[0].warmup:
                continue
            for device, pct in got[0].other_load_pct.items():
                if pct > OTHER_LOAD_LIMIT_PCT:
                    return (f"other programs used {pct:.0f}% of {device} during "
                            f"{run.name}'s round")
        return None

    def replace_set(self, runs: Sequence[_Run], step: int, why: str) -> None:
        """Take the set's rounds out of the statistics (kept in the record), to measure the
        step again; the monitor's spans of those rounds are retagged ``replaced``."""
        entry: dict[str, Any] = {"step": step, "reason": why, "time_s": {}, "other_load_pct": {}}
        for run in runs:
            got = run.round_at(step)
            if got is None:
                continue
            record, span = got
            entry["time_s"][run.name] = record.time_s
            entry["other_load_pct"][run.name] = dict(record.other_load_pct)
            if self.sampler is not None and span is not None:
                self.sampler.retag(span, PHASE_REPLACED)
        self.replaced.append(entry)

    def mark(self, mode: str | None, phase: str, index: int | None) -> int | None:
        """Tell the monitor which span runs now; the span's index (None: no monitor)."""
        return self.sampler.mark(mode, phase, index) if self.sampler is not None else None

    def start(self, run: _Run) -> None:
        """Start the mode (again, for serial in a later block: its first cold start counts)."""
        if run.status != STATUS_OK or run.mode is not None:
            return
        first = not run.started
        run.started = True
        self.progress(run.name, PHASE_COLD_START, 0, 1)
        self.mark(run.name, PHASE_COLD_START, None)
        try:
            cls = mode_class(run.name)
            run.tolerance = self.prep.tolerance_of(cls)  # one value, for every check
            mode = cls(self.prep.plan)
            run.not_reproducible = mode.not_reproducible(self.prep.draws_global_rng)
            run.device_ids = mode.device_ids
            run.workers = mode.workers
            run.mode = mode
            t0 = self.clock()
            mode.start()
            if first:
                run.cold_start_s = self.clock() - t0
                run.startup = dict(mode.startup_parts())
                run.settings = {k: dict(v) for k, v in mode.worker_settings().items()}
                run.engine = dict(mode.engine())
            if self.sampler is not None:
                self.sampler.watch_pids(run.name, mode.pids())
        except NotApplicable as exc:
            run.fail(STATUS_NOT_APPLICABLE, str(exc))
        except Exception as exc:  # ModeFailure, or anything a case or backend raised
            run.fail(STATUS_FAILED, _reason(exc), _detail(exc))
        if run.status != STATUS_OK:
            release_failed(run)
            self.progress(run.name, "failed", 0, 1)

    def round(self, run: _Run, step: int, block: Block) -> None:
        if run.mode is None:
            return
        local = step - block.first_step
        warmup = local < self.prep.config.warmup
        index = local if warmup else local - self.prep.config.warmup
        phase = PHASE_WARMUP if warmup else PHASE_ROUND
        total = self.prep.config.warmup if warmup else self.prep.config.rounds
        self.progress(run.name, phase, index + 1, total)
        global_state = self.prep.global_for(step)
        # A fresh buffer every round: a client nobody trained stays NaN.
        fingerprints = torch.full(
            (self.prep.plan.clients, FINGERPRINT_SIZE), math.nan, dtype=torch.float64
        )
        span = self.mark(run.name, phase, index)
        try:
            live = run.mode.live_fingerprints(fingerprints)
            with ClientTicker(self.progress, (run.name, phase, index + 1, total),
                              lambda: int((~torch.isnan(live[:, 0])).sum()), len(live)):
                t0 = self.clock()
                out = run.mode.run_round(global_state, fingerprints)
                elapsed = self.clock() - t0
            # Close the round's span now: what follows (FedAvg, checks, closing the mode,
            # the next mode's start) must not count as this round's device time or energy.
            self.mark(run.name, PHASE_BETWEEN, None)
            a0 = self.clock()
            update = fedavg(out)
            self.check_round(out, update, step, run.tolerance)
            aggregate_s = self.clock() - a0
        except Exception as exc:
            self.mark(run.name, PHASE_BETWEEN, None)
            run.fail(STATUS_FAILED, _reason(exc), _detail(exc))
        if run.status != STATUS_OK:  # closed here, the exception and its frames dropped
            release_failed(run)
            self.progress(run.name, "failed", index + 1, total)
            return
        self.ledger.record(run.name, step, out.fingerprints.numpy())
        clients = _from_round_start(out.clients, t0)
        other = self.other_load(run, span)
        run.record(RoundRecord(step, warmup, elapsed, clients, aggregate_s,
                               other_load_pct=other, start_s=t0 - self.origin), step, span)
        if not warmup:
            _keep_peak(run.memory, out.memory)
        if local == self.per_block - 1 and not block.retime:
            self.last.add(run.name, update, global_state)

    def profile(self, run: _Run, step: int) -> None:
        """``--profile-ops``: one more round of the mode at ``step`` (its last measured
        round's model) with torch.profiler on in its workers, timed and checked like the
        others and kept out of every statistic (``ModeResult.profiled``). A mode whose
        workers are another engine's is not profiled; a profiled round that fails is
        recorded (``profiled_round_error``) without failing the mode."""
        if run.mode is None or run.profiled is not None:
            return
        root = self.profile_root or tempfile.mkdtemp(prefix=TEMP_PREFIX)
        if not run.mode.profile_next_round(f"{root}/{run.name}"):
            if self.profile_root is None:  # nothing will be written there
                os.rmdir(root)
            return
        self.profile_root = root
        fingerprints = torch.full(
            (self.prep.plan.clients, FINGERPRINT_SIZE), math.nan, dtype=torch.float64
        )
        self.mark(run.name, PHASE_PROFILED, None)
        try:
            wall, t0 = time.time_ns(), self.clock()
            out = run.mode.run_round(self.prep.global_for(step), fingerprints)
            elapsed = self.clock() - t0
            self.mark(run.name, PHASE_BETWEEN, None)
            self.check_round(out, fedavg(out), step, run.tolerance)
        except Exception as exc:
            self.mark(run.name, PHASE_BETWEEN, None)
            run.extra["profiled_round_error"] = _reason(exc)
            return
        measured = [r.time_s for r in run.rounds if not r.warmup]
        record = RoundRecord(step, False, elapsed, _from_round_start(out.clients, t0),
                             start_s=t0 - self.origin)
        run.profiled = ProfiledRound(record, tuple(out.op_traces), wall,
                                     median(measured) if measured else None)

    def other_load(self, run: _Run, span: int | None) -> dict[str, float]:
        """Other programs' mean load on the mode's devices during its round's span."""
        if self.sampler is None or span is None:
            return {}
        got = self.sampler.other_load(span)
        return {d: v for d in run.device_ids if (v := got.get(d)) is not None}

    def check_round(
        self, out: RoundOutput, update: FedAvgUpdate, step: int, tolerance: float
    ) -> None:
        """Every client exactly once, every partial sum present, and an aggregate that is
        the FedAvg of the clients' updates; else the mode fails naming what is wrong."""
        where = f"round {step + 1}"
        counts = np.bincount(
            [c.client for c in out.clients], minlength=self.prep.plan.clients
        )
        for client, count in enumerate(counts.tolist()):
            if count != 1:
                raise ModeFailure(
                    f"{where}: client {client} was "
                    + ("not trained" if count == 0 else f"trained {count} times")
                )
        fps = out.fingerprints.numpy()
        missing = np.flatnonzero(~np.isfinite(fps).all(axis=1))
        if missing.size:
            raise ModeFailure(f"{where}: client {int(missing[0])} has no result")
        total = float(sum(out.weights))
        expected = float(sum(self.prep.weights))
        if not math.isfinite(total) or not torch.isfinite(update.chunk(0, 1)).all():
            raise ModeFailure(f"{where}: a worker returned no partial sum")
        if total != expected:
            raise ModeFailure(
                f"{where}: the partial sums hold {total:g} samples, the clients have {expected:g}"
            )
        weights = np.asarray(self.prep.weights)
        diff = consistency_diff(self.sketch.of_vector(update).numpy(), fps, weights)
        if diff > tolerance:
            raise ModeFailure(
                f"{where}: the aggregate is not the FedAvg of the clients' updates "
                f"(relative difference {diff:.2g})"
            )

    def finish(self, run: _Run) -> None:
        run.close()
        release_free_heap()  # the mode's replicas and data, before the next mode starts
        if self.sampler is not None:
            self.sampler.unwatch_pids(run.name)
        self.mark(None, PHASE_BETWEEN, None)
        self.progress(run.name, "done" if run.status == STATUS_OK else "failed", 1, 1)


def _from_round_start(clients: Sequence[ClientTiming], t0: float) -> tuple[ClientTiming, ...]:
    """The clients in client order, their times counted from the round's start ``t0``."""
    return tuple(sorted(
        (replace(c, start_s=c.start_s - t0, end_s=c.end_s - t0) for c in clients),
        key=lambda c: c.client,
    ))


def release_failed(run: _Run) -> None:
    """Close a mode that failed, outside the ``except`` block that caught its exception: what
    it held (replicas, activations, client data) is released, collected, and the CUDA
    allocator's cache handed back, so that the modes after it find the memory free."""
    devices = run.mode.device_ids if run.mode is not None else ()
    run.close()
    release_device_memory(devices)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (ModeFailure, NotApplicable)):
        return str(exc)
    return first_line(exc)


def _detail(exc: BaseException) -> str:
    """The whole story of a failure: the worker's traceback if it came from one."""
    here = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    remote = getattr(exc, "detail", None)
    return f"{remote}\n(raised in the parent as)\n{here}" if remote else here


def monitor_for(config: RunConfig) -> SamplerFactory | None:
    """The one decision whether a run samples its devices: ``config.sample_interval_s``
    (None or 0: the monitor is off)."""
    if not config.sample_interval_s:
        return None
    from gpubench.monitor import create_sampler

    return create_sampler


def measure(
    config: RunConfig,
    *,
    progress: Progress | None = None,
    command: str = "",
    prepared: Prepared | None = None,
) -> Results:
    """The one measuring entry: every check (:func:`prepare`, unless ``prepared`` is given),
    the environment, the monitor as the config says (:func:`monitor_for`), then every mode.
    The command line, the API, the FAQ's plan and sweeps all measure through it."""
    prep = prepared if prepared is not None else prepare(config)
    return compare(config, progress=progress, sampler_factory=monitor_for(config),
                   command=command, prepared=prep)


def compare(
    config: RunConfig,
    *,
    clock: Clock = time.perf_counter,
    progress: Progress | None = None,
    sampler_factory: SamplerFactory | None = None,
    command: str = "",
    prepared: Prepared | None = None,
) -> Results:
    """Run every selected mode and return what was measured (:func:`measure` is the entry
    that decides the monitor; this takes any sampler, for tests).

    Ctrl-C stops the workers and returns what was measured so far with ``interrupted`` set;
    the caller writes it and exits.
    """
    prep = prepared or prepare(config)
    # The schedule is the prepared run's: interleaving is dropped where the memory plan says
    # the modes' workers do not fit at once (``prep.schedule_reason``).
    config = replace(config, interleave=prep.config.interleave)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    environment = collect_environment(prep.all_devices)
    sampler = None
    if sampler_factory is not None and config.sample_interval_s:
        sampler = sampler_factory(prep.all_devices, config.sample_interval_s)
    harness = _Harness(prep, clock, progress, sampler)
    runs = {name: _Run(name, tolerance=prep.tolerance) for name in config.modes}
    blocks = plan_blocks(config)
    interrupted = False
    if sampler is not None:
        sampler.start()
        if (t0 := getattr(sampler, "t0", None)) is not None:
            harness.origin = t0
    try:
        for block in blocks:
            harness.run_block(block, [runs[m] for m in block.modes])
    except KeyboardInterrupt:
        interrupted = True
        for run in runs.values():
            if run.mode is not None:
                run.fail(STATUS_FAILED, "interrupted (Ctrl-C)")
    finally:
        for run in runs.values():
            run.close()
        if sampler is not None:
            sampler.stop()
    modes = _mode_results(list(runs.values()), harness, sampler)
    results = Results(
        environment=environment,
        config=RunRecord.of({
            **config.to_dict(),
            "device_ids": [d.id for d in prep.devices],
            "tolerance_used": prep.tolerance,
            "noise_floor": prep.noise_floor,
            "schedule": "interleaved" if config.interleave else "sequential",
            "schedule_reason": prep.schedule_reason,
            "schedule_blocks": [",".join(b.modes) for b in blocks],
            "draws_global_rng": prep.draws_global_rng,
            "samples": list(prep.plan.sizes),
            "state_size": prep.plan.state_size,
            "remeasured_sets": harness.replaced,
        }),
        modes=modes,
        devices=tuple(d.to_dict() for d in prep.all_devices),
        monitor=sampler.results_section() if sampler is not None else None,
        command=command,
        created_utc=created,
        interrupted=interrupted,
        tool_version=__version__,
        memory_plan=memplan.record(prep.memory, modes),
    )
    return results.with_speedups()


def _mode_results(
    runs: Sequence[_Run], harness: _Harness, sampler: Sampler | None
) -> tuple[ModeResult, ...]:
    serial = next((r for r in runs if r.name == "serial" and r.status == STATUS_OK), None)
    out = []
    for run in runs:
        measured = [r.time_s for r in run.rounds if not r.warmup]
        ok = run.status == STATUS_OK and bool(measured)
        if run.status == STATUS_OK and not measured:
            run.status, run.error = STATUS_FAILED, "no round was measured"
        speedup = None  # set from the Results (Results.with_speedups)
        verdict = _Verdict()
        if ok and serial is not None:
            verdict = _compare_with_serial(run, serial, harness)
        rounds = tuple(
            replace(r, client_diffs=tuple(verdict.diffs.get(step, ())))
            for r, step in zip(run.rounds, run.steps, strict=True)
        )
        stats: tuple[DeviceStats, ...] = ()
        other = OtherLoadStats({}, ())
        if sampler is not None and run.status == STATUS_OK:
            stats = sampler.device_stats(run.name)
            other = sampler.mode_other_load(run.name, run.device_ids)
        out.append(
            ModeResult(
                name=run.name,
                status=run.status,
                error=run.error,
                error_detail=run.error_detail,
                devices=run.device_ids,
                workers=run.workers,
                cold_start_s=run.cold_start_s,
                warmup_times_s=tuple(r.time_s for r in run.rounds if r.warmup),
                round_times_s=tuple(measured),
                speedup_vs_serial=speedup,
                max_abs_diff_vs_serial=verdict.aggregate_diff,
                same_result=verdict.same,
                worst_client=verdict.worst_client,
                worst_round=verdict.worst_round,
                worst_client_diff=verdict.worst_diff,
                reproducible=run.not_reproducible is None,
                not_reproducible_reason=run.not_reproducible,
                rounds=rounds,
                device_stats=stats,
                worker_memory=tuple(run.memory[k] for k in sorted(run.memory)),
                extra=ModeExtra(tolerance=run.tolerance, startup_s=run.startup or None,
                                adjudication=verdict.adjudication,
                                worker_settings=run.settings or None,
                                engine=run.engine or None,
                                other=dict(run.extra)),
                other_load_pct=other.pct,
                other_processes=other.processes,
                facts=mode_facts(run.name),
                profiled=run.profiled,
            )
        )
    return tuple(out)


@dataclass
class _Verdict:
    same: bool | None = None
    aggregate_diff: float | None = None
    worst_client: int | None = None
    worst_round: int | None = None
    worst_diff: float | None = None
    diffs: dict[int, list[float]] = field(default_factory=dict)
    adjudication: Adjudication | None = None


def _compare_with_serial(run: _Run, serial: _Run, harness: _Harness) -> _Verdict:
    """Every client of every round against serial's; the last aggregate too. A mode whose
    work is known not to be reproducible is compared (its numbers are recorded) but never
    called the same, nor different."""
    comparison: Comparison | None = harness.ledger.compare(run.name, serial.name)
    v = _Verdict()
    if comparison is None:
        return v
    v.diffs = comparison.per_step
    v.worst_client, v.worst_diff = comparison.worst_client, comparison.worst_diff
    if comparison.worst_step is not None:
        v.worst_round = run.steps.index(comparison.worst_step) if comparison.worst_step in run.steps else None
    v.aggregate_diff, aggregate_rel = harness.gaps.get(run.name, (None, 0.0))
    if run.not_reproducible is None:
        worst = v.worst_diff if v.worst_diff is not None else 0.0
        v.same = worst <= run.tolerance and aggregate_rel <= run.tolerance
        if worst > run.tolerance:
            # Judged by each client's own spread; the aggregate follows from the clients
            # (every round checked it against theirs, check_round).
            v.adjudication = adjudicate_mode(
                harness.prep.retrainer(), comparison, harness.ledger, run.name, serial.name,
                run.steps, run.tolerance,
            )
            v.same = settled(v.adjudication)
    return v
