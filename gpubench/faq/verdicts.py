"""A verdict per belief: *holds*, *does not hold* or *inconclusive*, from a 95% interval.

Each belief is a claim about one ratio: a speedup, the change of a round between two batch
sizes, a process's memory against the 2 GB the notes expect. The claim names a limit — the
ratio lies below it, above it, or between two — and the verdict comes from where the whole
95% bootstrap interval of the ratio lies, never from the point estimate: wholly on the
belief's side, it holds; wholly on the other, it does not; across the limit, or without an
interval (fewer than two values in a sample, a mode that failed or computed something
else), it is inconclusive. The limits, each with its reason:

1. threads slower than serial: below ``findings.SLOWER`` (0.95x), slower beyond round noise;
2. processes on one device still serial: below ``findings.NO_FASTER`` (1.10x);
3. one process per device gives close to k-fold: above ``findings.GOOD_SCALING`` x k (85%);
4. batch 32 -> 128 gives 2-3x: a round at least 2x faster per sample (more is more than the
   notes expected, and still holds);
5. about 2 GB per training process: within 25% of 2 GB (1.5-2.5 GB); and more processes
   need more memory: the device holds at least 5% more with several processes than with one.

Every number comes from the results alone; the wording is in ``gpubench.report.faq_page``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpubench import stats
from gpubench.faq import memory, timeline
from gpubench.faq.inputs import FaqInputs, device_ids
from gpubench.findings import Finding, compute_findings
from gpubench.findings import base as findings
from gpubench.results import ModeResult, Results

LEVEL = 0.95
HOLDS, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "does-not-hold", "inconclusive"
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE)
BELIEFS = ("threads", "processes", "multi-gpu", "batch", "memory")

EXPECTED_GB = 2.0  # the notes: "显存（每个GPU）2GB" for every configuration
ABOUT = 0.25  # "about": within 25%
MORE_MEMORY = 1.05  # "more": beyond 5%
BATCH_GAIN = 2.0  # "2-3x": at least 2x

# Findings that explain each answer (their codes); a finding about a mode that failed or
# differed is attached where that mode is measured.
FINDING_CODES: dict[str, tuple[str, ...]] = {
    "threads": ("threads-slower", "one-device-faster", "device-starved"),
    "processes": ("processes-time-sliced", "one-device-faster", "device-starved"),
    "multi-gpu": ("scaling-good", "scaling-poor", "unbalanced-devices", "cold-start-dominates"),
    "batch": ("device-starved",),
    "memory": ("processes-time-sliced",),
}
_RUN_PROBLEMS = ("result-differs", "not-reproducible", "wide-spread")


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
    """The one call into :mod:`gpubench.stats`: the 95% bootstrap interval of
    ``prod(median(n)) / prod(median(d))`` and, per limit, where the whole interval lies:
    ``"below"``, ``"above"``, ``"straddles"``, or ``"unknown"`` when the data gave none."""
    interval = stats.bootstrap_ratio(numerators, denominators, level=LEVEL)
    if not interval.estimated and interval.low == interval.high:  # one round: no spread
        return interval, tuple("unknown" for _ in limits)
    sides = tuple(
        "below" if interval.below(x) else "above" if interval.above(x) else "straddles"
        for x in limits
    )
    return interval, sides


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
    limits = [x for x in (claim.low, claim.high) if x is not None]
    interval, sides = ratio_vs_limits(numerators, denominators, limits)
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
    if any(p.verdict == DOES_NOT_HOLD for p in parts):
        return DOES_NOT_HOLD
    if parts and all(p.verdict == HOLDS for p in parts):
        return HOLDS
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


def _speedup_part(results: Results | None, name: str, key: str, claim: Claim) -> Part:
    serial, why = _usable(results, "serial")
    mode, why_mode = _usable(results, name)
    if serial is None or mode is None:
        failed = results.mode(name) if results is not None else None
        error = failed.error if failed is not None else None
        return missing(key, claim, why_mode or why or "missing", mode=name, error=error)
    facts = {"mode": name, "workers": mode.workers, "devices": list(mode.devices),
             "serial_util": _util(serial), "mode_util": _util(mode),
             "device_util": {d: _util(mode, d) for d in mode.devices},
             "serial_s": serial.median_round_s, "mode_s": mode.median_round_s}
    return judge(key, claim, [serial.round_times_s], [mode.round_times_s], facts)


def threads_part(results: Results | None) -> Part:
    return _speedup_part(results, "threaded", "threaded-vs-serial", Claim(high=findings.SLOWER))


def processes_part(results: Results | None) -> Part:
    return _speedup_part(
        results, "multiprocess", "multiprocess-vs-serial", Claim(high=findings.NO_FASTER)
    )


def multi_device_part(results: Results | None) -> Part:
    mode = results.mode("multi-gpu") if results is not None else None
    k = len(mode.devices) if mode is not None and mode.ok else 0
    if mode is not None and mode.ok and k < 2:
        return missing("multi-gpu-vs-serial", Claim(low=findings.GOOD_SCALING * 2),
                       "one-device", k=k)
    claim = Claim(low=findings.GOOD_SCALING * max(k, 2))
    part = _speedup_part(results, "multi-gpu", "multi-gpu-vs-serial", claim)
    return Part(part.key, part.verdict, part.claim, part.interval, part.reason,
                {**part.facts, "k": max(k, 2) if k else None})


def _per_sample(results: Results) -> list[float]:
    mode = results.mode("serial")
    samples = results.config.get("samples")
    epochs = int(results.config.get("local_epochs") or 1)
    n = sum(samples) * epochs if isinstance(samples, (list, tuple)) and samples else 1
    return [t / n for t in (mode.round_times_s if mode is not None else ())]


def batch_part(inputs: FaqInputs) -> Part:
    claim = Claim(low=BATCH_GAIN)
    if len(inputs.batch_points) < 2:
        return missing("batch", claim, "missing")
    small, large = inputs.batch_points[0], inputs.batch_points[-1]
    b_small, b_large = small.config["batch_size"], large.config["batch_size"]
    acc_small, acc_large = inputs.accuracy.get(b_small), inputs.accuracy.get(b_large)
    facts = {"from": b_small, "to": b_large,
             "util_from": _util(small.mode("serial")), "util_to": _util(large.mode("serial")),
             "round_from_s": small.mode("serial").median_round_s,  # type: ignore[union-attr]
             "round_to_s": large.mode("serial").median_round_s,  # type: ignore[union-attr]
             "accuracy_from": acc_small, "accuracy_to": acc_large}
    return judge("batch", claim, [_per_sample(small)], [_per_sample(large)], facts)


def process_memory_part(inputs: FaqInputs) -> Part:
    claim = Claim(low=1 - ABOUT, high=1 + ABOUT)
    procs = memory.measured_processes(inputs)
    if not procs:
        return missing("process-memory", claim, "missing")
    values = [p.total_bytes / (EXPECTED_GB * 1e9) for p in procs]
    facts = {"processes": len(procs), "median_bytes": memory.median_total(procs),
             "sources": sorted({p.source for p in procs})}
    # The reference is a constant: a sample of it that cannot vary.
    return judge("process-memory", claim, [values], [[1.0, 1.0]], facts, rounds=False)


def memory_growth_part(inputs: FaqInputs) -> Part:
    claim = Claim(low=MORE_MEMORY)
    run = inputs.memory
    serial, _ = _usable(run, "serial")
    multi, _ = _usable(run, "multiprocess")
    if run is None or serial is None or multi is None or not serial.devices:
        return missing("memory-growth", claim, "missing")
    if run.config.get("interleave"):
        # Every mode's processes were alive together: no mode's memory is its own.
        return missing("memory-growth", claim, "interleaved")
    device = serial.devices[0]
    one = timeline.mode_round_values(run.monitor, "mem", device, "serial")
    many = timeline.mode_round_values(run.monitor, "mem", device, "multiprocess")
    facts = {"workers": multi.workers, "device": device,
             "interleaved": bool(run.config.get("interleave"))}
    if not one or not many:
        return missing("memory-growth", claim, "no-samples", **facts)
    facts.update(one_bytes=stats.summarize(one).median, many_bytes=stats.summarize(many).median)
    return judge("memory-growth", claim, [[v for v in many if v > 0]],
                 [[v for v in one if v > 0]], facts, rounds=False)


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
            wanted = f.code in FINDING_CODES[belief] or (
                f.code in _RUN_PROBLEMS and bool(_modes_named(f) & set(names))
            )
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
