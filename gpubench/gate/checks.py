"""The gate's checks: pure functions of parsed runs (no I/O), each returning a Verdict.

Before any statistics, a mode's own record decides: one that failed to run, or whose result
differs from serial's (it computed something else, so its speed means nothing), FAILs with
the reason; one that does not apply is SKIPped. A mode whose work is known not to be
reproducible is checked on speed, and its result is never shown as equal: "not
reproducible: <reason>". Speedups and their intervals are ``Results.speed``'s, the one
measure the report's marks and the findings use (at the gate's ``--level``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gpubench import stats
from gpubench.gate.keys import RunKey
from gpubench.gate.verdicts import (
    DEFAULT_MAX_DROP,
    FAIL,
    INCONCLUSIVE,
    NOT_REPRODUCIBLE,
    PASS,
    RESULT_DIFFERS,
    RESULT_NOT_COMPARED,
    RESULT_REFERENCE,
    RESULT_SAME,
    SKIP,
    Verdict,
)
from gpubench.results import STATUS_FAILED, STATUS_NOT_APPLICABLE, ModeResult, Results
from gpubench.stats import DEFAULT_LEVEL, NOISY_SPREAD, REFERENCE_MODE, Interval

NOISY_HINT = ("run more rounds (6 or more interleaved rounds are paired, so drift of a "
              "shared machine cancels)")
POINT_HINT = "one round per mode gives no interval: run 3 or more (--rounds)"
_VERDICT_OF = {stats.WITHIN: PASS, stats.BEYOND: FAIL, stats.UNDECIDED: INCONCLUSIVE}


def verdict_of(interval: Interval, low: float | None, high: float | None) -> str:
    """PASS / FAIL / INCONCLUSIVE for an interval held to limits (``stats.decide``)."""
    return _VERDICT_OF[stats.decide(interval, low, high)]


def _first_line(text: str | None, default: str) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0].strip() if lines else default


def differs_reason(run: Results, mode: ModeResult) -> str:
    """Why a mode's result differs from serial's, as precisely as the file records it."""
    client = mode.worst_client
    round_ = mode.worst_round
    diff = mode.worst_client_diff
    tolerance = mode.tolerance
    limit = f" > tolerance {tolerance:g}" if isinstance(tolerance, (int, float)) else ""
    if client is not None and diff is not None:
        where = f"client {client}" + (f", round {round_}" if round_ is not None else "")
        return f"result differs from serial: {where}, relative diff {diff:.2g}{limit}"
    if mode.max_abs_diff_vs_serial is not None:
        return f"result differs from serial: max abs diff {mode.max_abs_diff_vs_serial:.2g}{limit}"
    return "result differs from serial"


def result_of(mode: ModeResult) -> str:
    """The mode's result vs serial's: same, differs, not reproducible (with why), not compared."""
    if mode.name == REFERENCE_MODE:
        return RESULT_REFERENCE
    if not mode.reproducible:
        reason = mode.not_reproducible_reason or "no reason recorded"
        return f"{NOT_REPRODUCIBLE}: {reason}"
    if mode.same_result is True:
        return RESULT_SAME
    if mode.same_result is False:
        return RESULT_DIFFERS
    return RESULT_NOT_COMPARED


def current_problem(case: str, run: Results, mode: ModeResult) -> Verdict | None:
    """A verdict decided before any statistics: failed, differs, not applicable, no rounds."""
    name = mode.name
    result = result_of(mode)
    if mode.status == STATUS_FAILED:
        msg = f"{name}: failed to run: {_first_line(mode.error, 'no reason recorded')}"
        return Verdict(case, name, FAIL, message=msg, result=result)
    if mode.status == STATUS_NOT_APPLICABLE:
        msg = f"{name}: {mode.error or 'not applicable'}"
        return Verdict(case, name, SKIP, message=msg, result=result)
    if result == RESULT_DIFFERS:
        msg = f"{name}: {differs_reason(run, mode)}"
        return Verdict(case, name, FAIL, message=msg, result=result)
    if name == REFERENCE_MODE:
        return None
    if run.speed(name) is None:
        serial = run.mode(REFERENCE_MODE)
        usable_serial = serial is not None and serial.ok and serial.round_times_s
        what = "round times" if usable_serial else "serial rounds"
        msg = f"{name}: no {what} in the current run to compute a speedup"
        return Verdict(case, name, FAIL, message=msg, result=result)
    return None


def before_speed(case: str, run: Results, name: str) -> Verdict | None:
    """The verdict on mode ``name`` of ``run`` against an earlier speedup that no speed
    decides: SKIP when the run lacks it, else :func:`current_problem`'s."""
    current = run.mode(name)
    if current is None:
        return Verdict(case, name, SKIP, message=f"{name}: not in the current run")
    return current_problem(case, run, current)


def _mode(run: Results, name: str) -> ModeResult:
    mode = run.mode(name)
    if mode is None:  # before_speed has ruled this out
        raise LookupError(name)
    return mode


def _noise_notes(label: str, rounds: stats.Rounds) -> tuple[str, ...]:
    values = rounds.candidate
    if len(values) >= 2 and stats.spread(values) > NOISY_SPREAD:
        return (f"{label} rounds vary by {stats.spread(values):.0%} (IQR/median)",)
    return ()


def _unproven(measured: str, interval: Interval, limit: str) -> str:
    """The message of an INCONCLUSIVE verdict, with the remedy that fits its cause."""
    if not interval.estimated:
        return f"{measured} misses {limit}, but {POINT_HINT}"
    return f"{measured} straddles {limit}: {NOISY_HINT}"


def unless_disturbed(verdict: Verdict, *runs: tuple[str, Results]) -> Verdict:
    """A speed verdict measured beside other programs' load (``Results.disturbance``, in any
    of ``runs``: (label, run)) is INCONCLUSIVE with that reason: never PASS, never FAIL."""
    if verdict.verdict not in (PASS, FAIL, INCONCLUSIVE):
        return verdict
    for label, run in runs:
        d = run.disturbance(verdict.mode)
        if d is not None:
            measured = f" ({verdict.message})" if verdict.message else ""
            return replace(verdict, verdict=INCONCLUSIVE, message=(
                f"{verdict.mode}: {label}{d.describe()}; not judged{measured}"))
    return verdict


def pct(level: float) -> str:
    return f"{level * 100:g}%"


def _ci(interval: Interval, level: float, template: str) -> str:
    return template.format(pct(level), interval.low, interval.high) if interval.estimated else ""


def _exact_one(level: float) -> Interval:
    return Interval(1.0, 1.0, 1.0, level)


def _speed(run: Results, name: str) -> stats.Speed:
    speed = run.speed(name)
    if speed is None:  # current_problem has ruled this out
        raise LookupError(name)
    return speed


@dataclass(frozen=True)
class SpeedupDropCheck:
    """Against an earlier run: the speedup may not fall by more than ``max_drop``."""

    case: str
    mode: str
    baseline: Results
    max_drop: float = DEFAULT_MAX_DROP
    level: float = DEFAULT_LEVEL

    def evaluate(self, run: Results) -> Verdict:
        name, case = self.mode, self.case
        problem = before_speed(case, run, name)
        if problem is not None:
            return problem
        current = _mode(run, name)
        result = result_of(current)
        limit = 1 - self.max_drop
        limit_text = f">= {limit:.2f}x of baseline"
        if name == REFERENCE_MODE:
            one = _exact_one(self.level)
            return Verdict(case, name, PASS, one, "1.00x", one, limit_text, result=result)
        cur_speed = _speed(run, name)
        cur_rounds = cur_speed.rounds
        cur = cur_speed.at(self.level)
        notes = _noise_notes("current", cur_rounds)
        base_mode = self.baseline.mode(name)
        base_speed = self.baseline.speed(name)
        if base_mode is None or not base_mode.ok or base_speed is None:
            why = (
                "not in the baseline"
                if base_mode is None
                else (
                    f"{base_mode.status} in the baseline"
                    if not base_mode.ok
                    else "no serial rounds in the baseline"
                )
            )
            return Verdict(case, name, SKIP, cur, "-", None, limit_text,
                           f"{name}: {why}; nothing to compare", notes, result,
                           cur_rounds.paired)  # fmt: skip
        base = base_speed.ratio
        change = stats.change_interval(cur_rounds, base_speed.rounds, level=self.level)
        verdict = verdict_of(change, limit, None)
        summary = (
            f"{name}: speedup {base:.2f}x (baseline) -> {cur.estimate:.2f}x "
            f"(current), {change.estimate:.2f}x of baseline"
        ) + _ci(change, self.level, ", {} CI [{:.2f}, {:.2f}]")
        message = None
        if verdict == FAIL:
            message = f"{summary}, below the allowed {limit:.2f}x (--max-drop {self.max_drop:.0%})"
        elif verdict == INCONCLUSIVE:
            message = _unproven(summary, change, f"the allowed {limit:.2f}x")
        return unless_disturbed(
            Verdict(case, name, verdict, cur, f"{base:.2f}x", change, limit_text, message,
                    notes, result, cur_rounds.paired),
            ("", run), ("in the baseline, ", self.baseline),
        )  # fmt: skip


@dataclass(frozen=True)
class Expectation:
    """One ``[[expect]]`` entry: bounds on one mode's speedup, for runs it applies to."""

    mode: str
    case: str | None = None
    devices: int | None = None
    device_kind: str | None = None
    clients: int | None = None
    min_speedup: float | None = None
    max_speedup: float | None = None
    why: str = ""
    level: float = DEFAULT_LEVEL

    def applies_to(self, key: RunKey) -> bool:
        return (
            (self.case is None or self.case == key.case)
            and (self.devices is None or self.devices == key.devices)
            and (self.device_kind is None or self.device_kind == key.device_kind)
            and (self.clients is None or self.clients == key.clients)
        )

    def key(self) -> RunKey:
        return RunKey(self.case, self.clients, self.devices, self.device_kind)

    def describe(self) -> str:
        parts = []
        if self.min_speedup is not None:
            parts.append(f">= {self.min_speedup:.2f}x")
        if self.max_speedup is not None:
            parts.append(f"<= {self.max_speedup:.2f}x")
        return " and ".join(parts)

    def evaluate(self, run: Results) -> Verdict:
        name = self.mode
        case = str(run.config.case)
        current = run.mode(name)
        expected = self.describe()
        if current is None:
            msg = f"{name}: expected ({expected}) but not in the current run"
            return Verdict(case, name, FAIL, reference=expected, limit=expected, message=msg)
        problem = current_problem(case, run, current)
        if problem is not None:
            return problem
        notes: tuple[str, ...] = ()
        paired = False
        if name == REFERENCE_MODE:
            cur = _exact_one(self.level)
            verdict = verdict_of(cur, self.min_speedup, self.max_speedup)
        else:
            speed = _speed(run, name)
            check = speed.check(
                at_least=self.min_speedup, at_most=self.max_speedup, level=self.level
            )
            cur, paired = check.interval, check.paired
            verdict = _VERDICT_OF[check.outcome]
            notes = _noise_notes("current", speed.rounds)
        measured = f"{name}: speedup {cur.estimate:.2f}x" + _ci(
            cur, self.level, " ({} CI [{:.2f}, {:.2f}])"
        )
        why = f": {self.why}" if self.why else ""
        message = None
        if verdict == FAIL:
            message = f"{measured}, expected {expected}{why}"
        elif verdict == INCONCLUSIVE:
            message = _unproven(measured, cur, expected)
        verdict_ = Verdict(case, name, verdict, cur, expected, None, expected, message, notes,
                           result_of(current), paired)  # fmt: skip
        return verdict_ if name == REFERENCE_MODE else unless_disturbed(verdict_, ("", run))
