"""A verdict per belief: *holds*, *does not hold*, *inconclusive*, *not measured* or *not
applicable*, from the interval :mod:`gpubench.stats` gives every page.

Each belief is one or more claims about a ratio: a speedup, the change of a round between two
batch sizes, a process's memory against the 2 GB the notes expect. A claim names a limit — the
ratio lies below it, above it, or between two — and its verdict comes from where the whole
interval of the ratio lies (``stats.decide``, the gate's own rule at ``stats.DEFAULT_LEVEL``),
never from the point estimate: wholly on the belief's side, it holds; wholly on the other, it
does not; across the limit, or without an interval (a mode that failed or computed something
else), it is inconclusive. A speedup is ``Results.speed``'s: the number the report's table
and the README show.

A run that cannot test a claim says so instead of guessing: *not measured* (k-fold on k
devices from a run with one device), *not applicable* (GPU memory from CPU slots, which
have none: their resident memory is shown, not judged). A compound belief (5: about 2 GB,
and more with more processes) has one verdict per claim; the belief *partly holds* when
they disagree. The limits, each with its reason:

1. threads slower than serial: below ``stats.SLOWER`` (0.95x), slower beyond round noise;
2. processes on one device still serial: below ``findings.NO_FASTER`` (1.10x);
3. one process per device gives close to k-fold: above ``findings.GOOD_SCALING`` x k (85%);
4. batch 32 -> 128 gives 2-3x: a round at least 2x faster per sample (more is more than the
   notes expected, and still holds);
5. about 2 GB per training process: within 25% of 2 GB (1.5-2.5 GB); and more processes
   need more memory: the P processes of multiprocess together hold at least 5% more than one
   training process. Both from each process's *own* memory (NVML per process, the allocator's
   peak, or resident memory on CPU slots) of fresh worker processes
   (:func:`gpubench.faq.memory.worker_processes`), never from a device's total, which also
   holds the idle parent's CUDA context. A verdict needs ``MIN_PROCESSES`` processes: with
   fewer, the interval (Student's t over two values) is no evidence and is not shown.

No memory claim is decided by a zero-width interval: processes whose memory is all the same
say nothing about its spread, so the part is *inconclusive*.

Every number comes from the results alone; the wording is in ``gpubench.report.faq_page``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpubench import stats
from gpubench.faq import memory
from gpubench.faq.inputs import FaqInputs, device_ids
from gpubench.findings import Finding, compute_findings
from gpubench.findings import base as findings
from gpubench.results import ModeResult, Results

LEVEL = stats.DEFAULT_LEVEL
HOLDS, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "does-not-hold", "inconclusive"
NOT_MEASURED, NOT_APPLICABLE, PARTLY = "not-measured", "not-applicable", "partly"
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, NOT_MEASURED, NOT_APPLICABLE, PARTLY)
# Accuracy is claimed only over this many seeds: one seed's curve of a few FedAvg rounds is
# not a property of the batch size (the order of two curves can flip from one round to the
# next); the figure is the mean over seeds of each seed's last ``ACCURACY_LAST`` rounds.
MIN_SEEDS = 3
ACCURACY_LAST = 2
BELIEFS = ("threads", "processes", "multi-gpu", "batch", "memory")

EXPECTED_GB = 2.0  # the notes: "显存（每个GPU）2GB" for every configuration
ABOUT = 0.25  # "about": within 25%
MORE_MEMORY = 1.05  # "more": beyond 5%
BATCH_GAIN = 2.0  # "2-3x": at least 2x
MIN_PROCESSES = 3  # per-process values a memory verdict needs (two give only a t interval)

# Findings that explain each answer (their codes); a finding about a mode that failed or
# differed is attached where that mode is measured.
FINDING_CODES: dict[str, tuple[str, ...]] = {
    "threads": ("threads-slower", "clients-waited", "one-device-faster", "device-starved"),
    "processes": ("processes-time-sliced", "clients-waited", "one-device-faster",
                  "device-starved"),
    "multi-gpu": ("scaling-good", "scaling-poor", "unbalanced-devices", "cold-start-dominates"),
    "batch": ("device-starved",),
    "memory": ("processes-time-sliced",),
}
_RUN_PROBLEMS = ("result-differs", "not-reproducible", "wide-spread", "busy-machine")
# Findings about one mode, attached only where that mode answers (the measured waiting of
# threaded's clients answers belief 1, multiprocess's belief 2).
_ABOUT_ITS_MODE = ("clients-waited",)


@dataclass(frozen=True)
class Claim:
    """The belief's side of a ratio: above ``low``, below ``high``, or between both."""

    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Part:
    """One measured ratio against the belief's claim."""

    key: str
    verdict: str
    claim: Claim
    interval: stats.Interval | None = None
    reason: str | None = None  # why inconclusive without a decisive interval
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    belief: str
    verdict: str
    parts: tuple[Part, ...]
    findings: tuple[Finding, ...] = ()
    command: str = ""


def ratio_vs_limits(
    numerators: Sequence[Sequence[float]],
    denominators: Sequence[Sequence[float]],
    limits: Sequence[float],
) -> tuple[stats.Interval, tuple[str, ...]]:
    """The one call into :mod:`gpubench.stats`: the interval (at ``LEVEL``) of
    ``prod(median(n)) / prod(median(d))`` and, per limit, where the whole interval lies:
    ``"below"``, ``"above"``, ``"straddles"``, or ``"unknown"`` when the data gave none."""
    interval = stats.bootstrap_ratio(numerators, denominators, level=LEVEL)
    return interval, _sides(interval, limits)


def _sides(interval: stats.Interval, limits: Sequence[float]) -> tuple[str, ...]:
    if not interval.estimated and interval.low == interval.high:  # one round: no spread
        return tuple("unknown" for _ in limits)
    return tuple(
        "below" if interval.below(x) else "above" if interval.above(x) else "straddles"
        for x in limits
    )


def judge(
    key: str,
    claim: Claim,
    numerators: Sequence[Sequence[float]],
    denominators: Sequence[Sequence[float]],
    facts: Mapping[str, Any] | None = None,
    rounds: bool = True,
) -> Part:
    """``rounds``: the samples are round times (the gate's few-rounds rule applies), not
    values of another kind (memory of several processes)."""
    interval = stats.bootstrap_ratio(numerators, denominators, level=LEVEL)
    return judge_interval(key, claim, interval, facts, rounds)


def judge_interval(
    key: str,
    claim: Claim,
    interval: stats.Interval,
    facts: Mapping[str, Any] | None = None,
    rounds: bool = True,
) -> Part:
    """The claim's verdict from an interval :mod:`gpubench.stats` computed."""
    limits = [x for x in (claim.low, claim.high) if x is not None]
    sides = _sides(interval, limits)
    found = iter(sides)
    low = next(found) if claim.low is not None else None
    high = next(found) if claim.high is not None else None
    if "unknown" in sides:
        return Part(key, INCONCLUSIVE, claim, interval, "few-values", facts or {})
    on_side = (low in (None, "above")) and (high in (None, "below"))
    off_side = low == "below" or high == "above"
    verdict = HOLDS if on_side else DOES_NOT_HOLD if off_side else INCONCLUSIVE
    if verdict == DOES_NOT_HOLD and not interval.estimated and rounds:
        # The gate's rule (gpubench.stats): with fewer than stats.MIN_ROUNDS rounds the
        # interval is the whole bootstrap range, enough to confirm a claim, never to refute it.
        return Part(key, INCONCLUSIVE, claim, interval, "few-rounds", facts or {})
    return Part(key, verdict, claim, interval, None, facts or {})


def missing(key: str, claim: Claim, reason: str, **facts: Any) -> Part:
    return Part(key, INCONCLUSIVE, claim, None, reason, facts)


def combine(parts: Sequence[Part]) -> str:
    """The belief's verdict from its claims' (see the module docstring)."""
    verdicts = [p.verdict for p in parts]
    for only in (NOT_APPLICABLE, NOT_MEASURED):
        if verdicts and all(v == only for v in verdicts):
            return only
    decided = [v for v in verdicts if v not in (NOT_APPLICABLE, NOT_MEASURED)]
    if HOLDS in decided and DOES_NOT_HOLD in decided:
        return PARTLY
    if DOES_NOT_HOLD in decided:
        return DOES_NOT_HOLD
    if decided and all(v == HOLDS for v in decided):
        return HOLDS
    if HOLDS in decided:
        return PARTLY
    return INCONCLUSIVE


# --- the ratios -------------------------------------------------------------------------------


def _usable(results: Results | None, name: str) -> tuple[ModeResult | None, str | None]:
    """The mode when its rounds may be compared; else why not (missing / failed / differs)."""
    mode = results.mode(name) if results is not None else None
    if mode is None:
        return None, "missing"
    if not mode.ok or not mode.round_times_s:
        return None, "failed"
    if mode.same_result is False:
        return None, "result-differs"
    return mode, None


def _util(mode: ModeResult | None, device: str | None = None) -> float | None:
    if mode is None or not mode.devices:
        return None
    device = device or mode.devices[0]
    stat = next((s for s in mode.device_stats if s.device == device), None)
    return stat.util_mean_pct if stat is not None else None


def _busy(key: str, claim: Claim, results: Results | None, name: str) -> Part | None:
    """*Inconclusive* with the reason when other programs' load disturbed ``name``'s rounds
    or serial's (``Results.disturbance``)."""
    busy = results.disturbance(name) if results is not None else None
    if busy is None:
        return None
    return missing(key, claim, "busy-machine", mode=name, during=busy.mode, device=busy.device,
                   other_pct=busy.pct, who=busy.who() or "?")


def _speedup_part(results: Results | None, name: str, key: str, claim: Claim) -> Part:
    serial, why = _usable(results, "serial")
    mode, why_mode = _usable(results, name)
    if serial is None or mode is None:
        failed = results.mode(name) if results is not None else None
        error = failed.error if failed is not None else None
        return missing(key, claim, why_mode or why or "missing", mode=name, error=error)
    busy = _busy(key, claim, results, name)
    if busy is not None:
        return busy
    facts = {"mode": name, "workers": mode.workers, "devices": list(mode.devices),
             "serial_util": _util(serial), "mode_util": _util(mode),
             "device_util": {d: _util(mode, d) for d in mode.devices},
             "serial_s": serial.median_round_s, "mode_s": mode.median_round_s}
    speed = results.speed(name) if results is not None else None
    if speed is None:
        return missing(key, claim, "missing", **facts)
    facts["paired"] = speed.paired
    return judge_interval(key, claim, speed.at(LEVEL), facts)


def threads_part(results: Results | None) -> Part:
    return _speedup_part(results, "threaded", "threaded-vs-serial", Claim(high=stats.SLOWER))


def processes_part(results: Results | None) -> Part:
    return _speedup_part(
        results, "multiprocess", "multiprocess-vs-serial", Claim(high=findings.NO_FASTER)
    )


def multi_device_part(results: Results | None) -> Part:
    mode = results.mode("multi-gpu") if results is not None else None
    k = len(mode.devices) if mode is not None and mode.ok else 0
    if mode is None or (mode.ok and k < 2):
        # One device (or no multi-device mode): k-fold on k >= 2 devices is not measured.
        return Part("multi-gpu-vs-serial", NOT_MEASURED, Claim(low=findings.GOOD_SCALING * 2),
                    None, "one-device" if mode is not None else "missing", {"k": k})
    claim = Claim(low=findings.GOOD_SCALING * max(k, 2))
    part = _speedup_part(results, "multi-gpu", "multi-gpu-vs-serial", claim)
    return Part(part.key, part.verdict, part.claim, part.interval, part.reason,
                {**part.facts, "k": max(k, 2) if k else None})


def _per_sample(results: Results) -> list[float]:
    mode = results.mode("serial")
    samples = results.config.samples
    epochs = int(results.config.local_epochs or 1)
    n = sum(samples) * epochs if isinstance(samples, (list, tuple)) and samples else 1
    return [t / n for t in (mode.round_times_s if mode is not None else ())]


def accuracy_summary(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Held-out accuracy at one batch size over its seeds (one accuracy run each).

    ``{"seeds": n, "rounds": r, "last": k}`` and, with at least ``MIN_SEEDS`` seeds, ``mean``
    and ``sd`` (over seeds) of each seed's mean over its last ``ACCURACY_LAST`` rounds, and
    ``local_steps``; None without a usable run. Fewer seeds: no accuracy figure is claimed.
    """
    finals: list[float] = []
    rounds, steps = None, None
    seen: set[Any] = set()
    for run in runs:
        curve = [v for v in (run.get("accuracy") or ()) if isinstance(v, (int, float))]
        if run.get("error") or not curve:
            continue
        seed = run.get("seed", len(seen))
        if seed in seen:
            continue
        seen.add(seed)
        tail = curve[-ACCURACY_LAST:]
        finals.append(sum(tail) / len(tail))
        rounds, steps = run.get("rounds") or len(curve), run.get("local_steps")
    if not finals:
        return None
    out: dict[str, Any] = {"seeds": len(finals), "rounds": rounds, "last": ACCURACY_LAST,
                           "local_steps": steps}
    if len(finals) >= MIN_SEEDS:
        mean = sum(finals) / len(finals)
        sd = (sum((v - mean) ** 2 for v in finals) / (len(finals) - 1)) ** 0.5
        out.update(mean=mean, sd=sd)
    return out


def batch_part(inputs: FaqInputs) -> Part:
    claim = Claim(low=BATCH_GAIN)
    if len(inputs.batch_points) < 2:
        return missing("batch", claim, "missing")
    small, large = inputs.batch_points[0], inputs.batch_points[-1]
    busy = _busy("batch", claim, small, "serial") or _busy("batch", claim, large, "serial")
    if busy is not None:
        return busy
    b_small, b_large = small.config["batch_size"], large.config["batch_size"]
    acc_small = accuracy_summary(inputs.accuracy.get(b_small, ()))
    acc_large = accuracy_summary(inputs.accuracy.get(b_large, ()))
    facts = {"from": b_small, "to": b_large,
             "util_from": _util(small.mode("serial")), "util_to": _util(large.mode("serial")),
             "round_from_s": small.mode("serial").median_round_s,  # type: ignore[union-attr]
             "round_to_s": large.mode("serial").median_round_s,  # type: ignore[union-attr]
             "accuracy_from": acc_small, "accuracy_to": acc_large}
    return judge("batch", claim, [_per_sample(small)], [_per_sample(large)], facts)


def not_applicable(part: Part) -> Part:
    """The part as *not applicable*: what was measured is kept as facts, not judged."""
    return Part(part.key, NOT_APPLICABLE, part.claim, part.interval, "cpu-slots", part.facts)


def _per_process(key: str, claim: Claim, values: Sequence[float], facts: Mapping[str, Any],
                 *, over: float | None = None, under: float | None = None) -> Part:
    """The median of per-process ``values`` ``over`` a constant (or the constant ``under``
    it) against ``claim``. The interval comes from the values alone (a constant is a sample
    that cannot vary); with fewer than ``MIN_PROCESSES`` values none is offered as evidence."""
    if len(values) < MIN_PROCESSES:
        return missing(key, claim, "few-processes", **facts, min_processes=MIN_PROCESSES)
    constant = [float(over if over is not None else under or 1.0)] * len(values)
    samples = ([values], [constant]) if over is not None else ([constant], [values])
    interval = stats.bootstrap_ratio(*samples, level=LEVEL)
    if interval.low == interval.high:
        return Part(key, INCONCLUSIVE, claim, None, "degenerate", facts)
    return judge_interval(key, claim, interval, facts, rounds=False)


def process_memory_part(inputs: FaqInputs) -> Part:
    claim = Claim(low=1 - ABOUT, high=1 + ABOUT)
    procs = memory.worker_processes(inputs)
    if not procs:
        parent = bool(memory.measured_processes(inputs))
        return missing("process-memory", claim, "parent-only" if parent else "missing")
    facts = {"processes": len(procs), "median_bytes": memory.median_total(procs),
             "sources": sorted({p.source for p in procs}), "device": procs[0].device}
    return _per_process("process-memory", claim, [p.total_bytes for p in procs], facts,
                        over=EXPECTED_GB * 1e9)


def memory_growth_part(inputs: FaqInputs) -> Part:
    """The P processes of multiprocess together over one training process, from each
    process's own memory: the sum of multiprocess's workers over the median of the memory
    run's fresh worker processes (multiprocess's and multi-gpu's)."""
    claim = Claim(low=MORE_MEMORY)
    run = inputs.memory
    multi, _ = _usable(run, "multiprocess")
    if run is None or multi is None:
        return missing("memory-growth", claim, "missing")
    if run.config.interleave:
        # Every mode's processes were alive together: no mode's memory is its own.
        return missing("memory-growth", claim, "interleaved")
    fresh = memory.worker_processes(inputs)
    many = [p for p in fresh if p.mode == "multiprocess"]
    facts: dict[str, Any] = {"workers": multi.workers, "device": many[0].device if many else
                             (multi.devices[0] if multi.devices else "?"),
                             "processes": len(fresh), "interleaved": False}
    if not many:
        return missing("memory-growth", claim, "no-processes", **facts)
    together = sum(p.total_bytes for p in many)
    facts.update(one_bytes=memory.median_total(fresh), many_bytes=together)
    return _per_process("memory-growth", claim, [p.total_bytes for p in fresh], facts,
                        under=together)


# --- answers ----------------------------------------------------------------------------------


def _modes_named(f: Finding) -> set[str]:
    """The modes a finding's facts name (``mode``, or a list under ``modes``)."""
    named = {str(f.facts["mode"])} if "mode" in f.facts else set()
    modes = f.facts.get("modes")
    if isinstance(modes, (list, tuple)):
        named |= {str(m.get("mode", m)) if isinstance(m, dict) else str(m) for m in modes}
    return named


def _findings_for(belief: str, runs: Sequence[Results | None], names: Sequence[str]) -> tuple[Finding, ...]:
    out: list[Finding] = []
    for run in runs:
        if run is None:
            continue
        for f in compute_findings(run):
            named = bool(_modes_named(f) & set(names))
            wanted = (f.code in FINDING_CODES[belief]
                      and (f.code not in _ABOUT_ITS_MODE or named)) or (
                f.code in _RUN_PROBLEMS and named)
            if wanted and f not in out:
                out.append(f)
    return tuple(out)


def answer_beliefs(inputs: FaqInputs) -> tuple[Answer, ...]:
    """The five answers, in the order of the notes."""
    comp = inputs.comparison
    command = comp.command if comp is not None else ""
    batch_cmd = inputs.batch_points[0].command if inputs.batch_points else ""
    mem_cmd = inputs.memory.command if inputs.memory is not None else ""
    small = inputs.batch_points[:1]
    parts = {
        "threads": (threads_part(comp),),
        "processes": (processes_part(comp),),
        "multi-gpu": (multi_device_part(comp),),
        "batch": (batch_part(inputs),),
        "memory": (process_memory_part(inputs), memory_growth_part(inputs)),
    }
    if inputs.cpu_slots:
        # Belief 5 is about GPU memory; a CPU slot's resident memory is shown, not judged.
        parts["memory"] = tuple(not_applicable(p) for p in parts["memory"])
    modes = {"threads": ("serial", "threaded"), "processes": ("serial", "multiprocess"),
             "multi-gpu": ("serial", "multi-gpu"), "batch": ("serial",), "memory": ()}
    sources: dict[str, Sequence[Results | None]] = {
        "threads": [comp], "processes": [comp], "multi-gpu": [comp], "batch": small,
        "memory": [inputs.memory],
    }
    commands = {"batch": batch_cmd, "memory": mem_cmd}
    return tuple(
        Answer(b, combine(parts[b]), parts[b], _findings_for(b, sources[b], modes[b]),
               commands.get(b, command))
        for b in BELIEFS
    )


def run_devices(inputs: FaqInputs) -> list[str]:
    return sorted({d for r in inputs.runs for d in device_ids(r)})
