"""The regression gate: verdicts on speedups against a baseline, for CI.

A baseline is one of:

- an earlier gpubench results file (or pytest-benchmark JSON file written by the suite in
  ``bench_cases/``): a mode FAILs when the confidence interval of
  ``current speedup / baseline speedup`` lies entirely below ``1 - max_drop``;
- a TOML expectations file checked into the repository (see ``docs/gating.md``)::

      [[expect]]
      case = "cnn"
      devices = 2
      mode = "multi-gpu"
      min_speedup = 1.5
      why = "two slots train clients in parallel"

  a mode FAILs when the interval of its speedup lies entirely below ``min_speedup`` (or
  entirely above ``max_speedup``).

Each check is a parsed object whose ``evaluate(run)`` returns a :class:`Verdict`: PASS, FAIL,
INCONCLUSIVE (the interval straddles the limit: passes unless ``strict``) or SKIP (nothing
to compare: a mode absent from the baseline, or not applicable to the run). Speedups always
come from the raw round times (see :mod:`gpubench.stats`). Never imports torch.
"""

from __future__ import annotations

import json
import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from tabulate import tabulate

from gpubench.errors import UsageError
from gpubench.results import (
    STATUS_FAILED,
    STATUS_NOT_APPLICABLE,
    STATUS_OK,
    STATUSES,
    ModeResult,
    Results,
    ResultsFileError,
    read_results,
    write_text_atomic,
)
from gpubench.stats import (
    DEFAULT_LEVEL,
    NOISY_SPREAD,
    Interval,
    bootstrap_ratio,
    spread,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

PASS = "PASS"
FAIL = "FAIL"
INCONCLUSIVE = "INCONCLUSIVE"
SKIP = "SKIP"
REFERENCE_MODE = "serial"
DEFAULT_MAX_DROP = 0.10
NOISY_HINT = "run more rounds, or compare with --interleave on a shared machine"
POINT_HINT = "one round per mode gives no interval: run 5 or more rounds"

# --- what a run is ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunKey:
    """What must be equal for two runs to be comparable."""

    case: str | None
    clients: int | None
    devices: int | None

    def describe(self) -> str:
        parts = [f"case {self.case!r}" if self.case is not None else "an unnamed case"]
        if self.clients is not None:
            parts.append(f"{self.clients} clients")
        if self.devices is not None:
            parts.append(f"{self.devices} devices")
        return ", ".join(parts)


def device_count(results: Results) -> int | None:
    """How many devices the run used, from the most specific record available."""
    config = results.config
    ids = config.get("device_ids")
    if isinstance(ids, (list, tuple)) and ids:
        return len(ids)
    count = config.get("device_count")
    if isinstance(count, int) and not isinstance(count, bool):
        return count
    used = {d for m in results.modes for d in m.devices}
    if used:
        return len(used)
    spec = str(config.get("devices", "")).strip().lower()
    kind, _, rest = spec.partition(":")
    if kind == "cpu" and rest.isdigit():
        return int(rest)
    if kind == "cuda" and rest:
        return len([p for p in rest.split(",") if p.strip()])
    if spec.isdigit():
        return int(spec)
    return len(results.devices) or None  # every device found, used or not: a last resort


def run_key(results: Results) -> RunKey:
    case = results.config.get("case")
    clients = results.config.get("clients")
    return RunKey(
        case=str(case) if case is not None else None,
        clients=int(clients) if isinstance(clients, int) else None,
        devices=device_count(results),
    )


def _differences(current: RunKey, baseline: RunKey) -> list[str]:
    diffs = []
    if current.case != baseline.case:
        diffs.append(f"case ({current.case!r} vs {baseline.case!r})")
    if None not in (current.clients, baseline.clients) and current.clients != baseline.clients:
        diffs.append(f"client count ({current.clients} vs {baseline.clients})")
    if None not in (current.devices, baseline.devices) and current.devices != baseline.devices:
        diffs.append(f"device count ({current.devices} vs {baseline.devices})")
    return diffs


# --- verdicts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    case: str
    mode: str
    verdict: str
    speedup: Interval | None = None  # the current speedup, with its interval
    reference: str = ""  # what it was compared to: "1.89x" (baseline) or ">= 1.50x"
    change: Interval | None = None  # current / baseline speedup (baseline checks only)
    limit: str = ""  # the limit the checked interval was held to
    message: str | None = None  # why it failed, or why it is inconclusive / skipped
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class GateReport:
    baseline: str
    baseline_kind: str  # "results", "pytest-benchmark" or "expectations"
    verdicts: tuple[Verdict, ...]
    max_drop: float
    strict: bool
    level: float
    notes: tuple[str, ...] = ()

    def counts_as_failure(self, v: Verdict) -> bool:
        return v.verdict == FAIL or (self.strict and v.verdict == INCONCLUSIVE)

    @property
    def failures(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if self.counts_as_failure(v))

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


class Check(Protocol):
    """A parsed check: ``evaluate`` returns the verdict on one run (its message says why)."""

    @property
    def mode(self) -> str: ...

    def evaluate(self, run: Results) -> Verdict: ...


def _exact_one(level: float) -> Interval:
    return Interval(1.0, 1.0, 1.0, level)


def _rounds(m: ModeResult) -> tuple[float, ...] | None:
    """The measured round times, or None when the file kept none."""
    if m.round_times_s:
        return tuple(float(t) for t in m.round_times_s)
    return None


def _speedup_samples(run: Results, mode: ModeResult) -> tuple[list[Sequence[float]], str | None]:
    """(``[serial rounds, mode rounds]``, note) for the speedup of ``mode`` within ``run``.

    When the mode's round times are missing but its speedup was saved, ``[(speedup,), (1.0,)]`` stands in:
    one "round" per sample, so the interval comes back flagged as not estimated.
    """
    serial = run.mode(REFERENCE_MODE)
    s = _rounds(serial) if serial is not None and serial.ok else None
    r = _rounds(mode)
    if s is not None and r is not None:
        return [s, r], None
    if r is None and mode.speedup_vs_serial:
        return [(float(mode.speedup_vs_serial),), (1.0,)], "no round times saved: point estimate"
    raise LookupError


def _current_problem(case: str, run: Results, mode: ModeResult, name: str) -> Verdict | None:
    """A verdict decided before any statistics: failed, not applicable, nothing to divide."""
    if mode.status == STATUS_FAILED:
        reason = (mode.error or "no reason recorded").strip().splitlines()
        msg = f"{name}: failed to run: {reason[0] if reason else 'no reason recorded'}"
        return Verdict(case, name, FAIL, message=msg)
    if mode.status == STATUS_NOT_APPLICABLE:
        return Verdict(case, name, SKIP, message=f"{name}: {mode.error or 'not applicable'}")
    if name == REFERENCE_MODE:
        return None
    try:
        _speedup_samples(run, mode)
    except LookupError:
        serial = run.mode(REFERENCE_MODE)
        usable_serial = serial is not None and serial.ok and serial.round_times_s
        what = "round times" if usable_serial else "serial rounds"
        return Verdict(
            case, name, FAIL, message=f"{name}: no {what} in the current run to compute a speedup"
        )
    return None


def _noise_notes(label: str, rounds: Sequence[float]) -> tuple[str, ...]:
    if len(rounds) >= 2 and spread(rounds) > NOISY_SPREAD:
        return (f"{label} rounds vary by {spread(rounds):.0%} (IQR/median)",)
    return ()


def _decide(interval: Interval, low: float | None, high: float | None) -> str:
    """FAIL when the whole interval is beyond a limit, INCONCLUSIVE when it straddles one."""
    if not interval.estimated:
        # One round cannot show noise: a point inside the limits passes, one outside is unproven.
        inside = (low is None or interval.estimate >= low) and (
            high is None or interval.estimate <= high
        )
        return PASS if inside else INCONCLUSIVE
    if (low is not None and interval.below(low)) or (high is not None and interval.above(high)):
        return FAIL
    if (low is None or interval.low >= low) and (high is None or interval.high <= high):
        return PASS
    return INCONCLUSIVE


def _unproven(measured: str, interval: Interval, limit: str) -> str:
    """The message of an INCONCLUSIVE verdict, with the remedy that fits its cause."""
    if not interval.estimated:
        return f"{measured} misses {limit}, but {POINT_HINT}"
    return f"{measured} straddles {limit}: {NOISY_HINT}"


def _pct(level: float) -> str:
    return f"{level * 100:g}%"


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
        current = run.mode(name)
        if current is None:
            return Verdict(case, name, SKIP, message=f"{name}: not in the current run")
        problem = _current_problem(case, run, current, name)
        if problem is not None:
            return problem
        limit = 1 - self.max_drop
        limit_text = f">= {limit:.2f}x of baseline"
        if name == REFERENCE_MODE:
            one = _exact_one(self.level)
            return Verdict(case, name, PASS, one, "1.00x", one, limit_text)
        cur_samples, cur_note = _speedup_samples(run, current)
        cur = bootstrap_ratio([cur_samples[0]], [cur_samples[1]], level=self.level)
        notes = _noise_notes("current", cur_samples[1]) + ((cur_note,) if cur_note else ())
        base_mode = self.baseline.mode(name)
        try:
            if base_mode is None or not base_mode.ok:
                raise LookupError
            base_samples, base_note = _speedup_samples(self.baseline, base_mode)
        except LookupError:
            why = (
                "not in the baseline"
                if base_mode is None
                else f"{base_mode.status} in the baseline"
            )
            return Verdict(
                case,
                name,
                SKIP,
                cur,
                "-",
                None,
                limit_text,
                f"{name}: {why}; nothing to compare",
                notes,
            )
        if base_note:
            notes += (f"baseline: {base_note}",)
        base_speedup = bootstrap_ratio([base_samples[0]], [base_samples[1]], level=self.level)
        change = bootstrap_ratio(
            [cur_samples[0], base_samples[1]], [cur_samples[1], base_samples[0]], level=self.level
        )
        verdict = _decide(change, limit, None)
        message = None
        summary = (
            f"{name}: speedup {base_speedup.estimate:.2f}x (baseline) -> {cur.estimate:.2f}x "
            f"(current), {change.estimate:.2f}x of baseline"
        )
        interval = (
            f", {_pct(self.level)} CI [{change.low:.2f}, {change.high:.2f}]"
            if change.estimated
            else ""
        )
        if verdict == FAIL:
            message = (
                f"{summary}{interval}, below the allowed {limit:.2f}x "
                f"(--max-drop {self.max_drop:.0%})"
            )
        elif verdict == INCONCLUSIVE:
            message = _unproven(summary + interval, change, f"the allowed {limit:.2f}x")
        return Verdict(
            case,
            name,
            verdict,
            cur,
            f"{base_speedup.estimate:.2f}x",
            change,
            limit_text,
            message,
            notes,
        )


@dataclass(frozen=True)
class Expectation:
    """One ``[[expect]]`` entry: bounds on one mode's speedup, for runs it applies to."""

    mode: str
    case: str | None = None
    devices: int | None = None
    clients: int | None = None
    min_speedup: float | None = None
    max_speedup: float | None = None
    why: str = ""
    level: float = DEFAULT_LEVEL

    def applies_to(self, key: RunKey) -> bool:
        return (
            (self.case is None or self.case == key.case)
            and (self.devices is None or self.devices == key.devices)
            and (self.clients is None or self.clients == key.clients)
        )

    def describe(self) -> str:
        parts = []
        if self.min_speedup is not None:
            parts.append(f">= {self.min_speedup:.2f}x")
        if self.max_speedup is not None:
            parts.append(f"<= {self.max_speedup:.2f}x")
        return " and ".join(parts)

    def evaluate(self, run: Results) -> Verdict:
        name = self.mode
        case = str(run.config.get("case"))
        current = run.mode(name)
        expected = self.describe()
        if current is None:
            return Verdict(
                case,
                name,
                FAIL,
                reference=expected,
                limit=expected,
                message=f"{name}: expected ({expected}) but not in the current run",
            )
        problem = _current_problem(case, run, current, name)
        if problem is not None:
            return problem
        notes: tuple[str, ...] = ()
        if name == REFERENCE_MODE:
            cur = _exact_one(self.level)
        else:
            samples, note = _speedup_samples(run, current)
            cur = bootstrap_ratio([samples[0]], [samples[1]], level=self.level)
            notes = _noise_notes("current", samples[1]) + ((note,) if note else ())
        verdict = _decide(cur, self.min_speedup, self.max_speedup)
        interval = (
            f" ({_pct(self.level)} CI [{cur.low:.2f}, {cur.high:.2f}])" if cur.estimated else ""
        )
        why = f": {self.why}" if self.why else ""
        message = None
        if verdict == FAIL:
            message = f"{name}: speedup {cur.estimate:.2f}x{interval}, expected {expected}{why}"
        elif verdict == INCONCLUSIVE:
            message = _unproven(f"{name}: speedup {cur.estimate:.2f}x{interval}", cur, expected)
        return Verdict(case, name, verdict, cur, expected, None, expected, message, notes)


# --- reading inputs -----------------------------------------------------------------------

_EXPECT_KEYS = {
    "mode": str,
    "case": str,
    "devices": int,
    "clients": int,
    "min_speedup": float,
    "max_speedup": float,
    "why": str,
}


def _expect_value(where: str, key: str, value: Any) -> Any:
    want = _EXPECT_KEYS[key]
    if isinstance(value, bool):
        raise UsageError(f"{where}: {key} must be a {want.__name__}, got {value!r}")
    if want is float and isinstance(value, int):
        value = float(value)
    if (
        key == "mode"
        and isinstance(value, list)
        and value
        and all(isinstance(v, str) for v in value)
    ):
        return value
    if not isinstance(value, want):
        raise UsageError(f"{where}: {key} must be a {want.__name__}, got {value!r}")
    if isinstance(value, (int, float)) and value <= 0:
        raise UsageError(f"{where}: {key} must be > 0, got {value!r}")
    return value


def load_expectations(path: str | os.PathLike[str]) -> tuple[Expectation, ...]:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {p}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p} is not valid TOML: {exc}") from None
    unknown = set(data) - {"expect", "description"}
    if unknown:
        raise UsageError(f"{p}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    entries = data.get("expect")
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{p}: no [[expect]] entries")
    out: list[Expectation] = []
    for i, entry in enumerate(entries, 1):
        where = f"{p}: [[expect]] #{i}"
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: not a table")
        bad = set(entry) - set(_EXPECT_KEYS)
        if bad:
            known = ", ".join(_EXPECT_KEYS)
            raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(bad))} (known: {known})")
        values = {k: _expect_value(where, k, v) for k, v in entry.items()}
        if "mode" not in values:
            raise UsageError(f"{where}: needs a mode")
        lo, hi = values.get("min_speedup"), values.get("max_speedup")
        if lo is None and hi is None:
            raise UsageError(f"{where}: needs min_speedup and/or max_speedup")
        if lo is not None and hi is not None and lo > hi:
            raise UsageError(f"{where}: min_speedup {lo} is above max_speedup {hi}")
        modes = values.pop("mode")
        for mode in [modes] if isinstance(modes, str) else modes:
            out.append(Expectation(mode=mode, **values))
    return tuple(out)


def _benchmark_runs(data: Mapping[str, Any], source: str) -> tuple[Results, ...]:
    """Runs from a pytest-benchmark JSON file written by the ``bench_cases`` suite."""
    groups: dict[tuple[str, int, int], list[ModeResult]] = {}
    info: dict[tuple[str, int, int], dict[str, Any]] = {}
    for bench in data.get("benchmarks") or ():
        extra = bench.get("extra_info") or {}
        mode = extra.get("gpubench_mode")
        if not mode:
            continue
        name = bench.get("fullname") or bench.get("name") or mode
        try:
            key = (str(extra["gpubench_case"]), int(extra["clients"]), int(extra["devices"]))
        except (KeyError, TypeError, ValueError):
            raise UsageError(
                f"{source}: benchmark {name} lacks gpubench_case/clients/devices in extra_info"
            ) from None
        status = str(extra.get("gpubench_status") or STATUS_OK)
        rounds = (bench.get("stats") or {}).get("data")
        if status not in STATUSES:
            raise UsageError(f"{source}: benchmark {name} has unknown status {status!r}")
        if status == STATUS_OK and not rounds:
            raise UsageError(
                f"{source}: benchmark {name} has no raw round times (stats.data); "
                "write the file with --benchmark-json, or save with --benchmark-save-data"
            )
        if any(m.name == mode for m in groups.get(key, ())):
            raise UsageError(f"{source}: two benchmarks for mode {mode!r} of case {key[0]!r}")
        speedup = extra.get("speedup_vs_serial")
        groups.setdefault(key, []).append(
            ModeResult(
                name=str(mode),
                status=status,
                error=extra.get("error"),
                devices=tuple(str(d) for d in extra.get("device_ids") or ()),
                round_times_s=tuple(float(t) for t in rounds or ()),
                speedup_vs_serial=float(speedup) if speedup else None,
            )
        )
        info.setdefault(key, {"batch_size": extra.get("batch_size")})
    if not groups:
        raise UsageError(
            f"{source}: a pytest-benchmark file without gpubench benchmarks "
            "(no extra_info.gpubench_mode); write it with `pytest bench_cases --benchmark-json`"
        )
    environment = {
        "source": "pytest-benchmark",
        "machine_info": data.get("machine_info") or {},
        "commit_info": data.get("commit_info") or {},
    }
    return tuple(
        Results(
            environment=environment,
            config={
                "case": case,
                "clients": clients,
                "devices": str(devices),
                "device_count": devices,
                **info[(case, clients, devices)],
            },
            modes=tuple(modes),
            created_utc=str(data.get("datetime") or ""),
        )
        for (case, clients, devices), modes in groups.items()
    )


def load_runs(path: str | os.PathLike[str]) -> tuple[tuple[Results, ...], str]:
    """Runs in a gpubench results file or a pytest-benchmark JSON file, and which it was."""
    try:
        return (read_results(path),), "results"
    except ResultsFileError as first:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise first from None
        if isinstance(data, dict) and "benchmarks" in data and "schema_version" not in data:
            return _benchmark_runs(data, str(path)), "pytest-benchmark"
        raise


# --- planning and running -----------------------------------------------------------------


def _is_toml(path: Path) -> bool:
    return path.suffix.lower() == ".toml"


def _plan_against_runs(
    runs: Sequence[Results],
    baselines: Sequence[Results],
    source: str,
    max_drop: float,
    level: float,
) -> list[tuple[Results, list[Check]]]:
    plan: list[tuple[Results, list[Check]]] = []
    for run in runs:
        key = run_key(run)
        same_case = [b for b in baselines if run_key(b).case == key.case]
        if not same_case:
            raise UsageError(
                f"cannot gate: CURRENT has {key.describe()} but {source} has "
                + "; ".join(run_key(b).describe() for b in baselines)
                + " (different case)"
            )
        matching = [b for b in same_case if not _differences(key, run_key(b))]
        if not matching:
            diffs = _differences(key, run_key(same_case[0]))
            raise UsageError(
                f"cannot gate: CURRENT and {source} differ in {' and '.join(diffs)}; "
                "gate runs of the same case, client count and device count"
            )
        baseline = matching[0]
        names = [m.name for m in run.modes]
        names += [m.name for m in baseline.modes if m.name not in names]
        case = str(key.case)
        checks: list[Check] = [SpeedupDropCheck(case, n, baseline, max_drop, level) for n in names]
        plan.append((run, checks))
    return plan


def _plan_against_expectations(
    runs: Sequence[Results], expectations: Sequence[Expectation], source: str, level: float
) -> list[tuple[Results, list[Check]]]:
    plan: list[tuple[Results, list[Check]]] = []
    for run in runs:
        key = run_key(run)
        applying = [e for e in expectations if e.applies_to(key)]
        if not applying:
            covered = sorted(
                {RunKey(e.case, e.clients, e.devices).describe() for e in expectations}
            )
            raise UsageError(
                f"cannot gate: no expectation in {source} applies to CURRENT ({key.describe()}); "
                f"it has expectations for: {'; '.join(covered)}"
            )
        order = {m.name: i for i, m in enumerate(run.modes)}
        applying.sort(key=lambda e: order.get(e.mode, len(order)))
        checks: list[Check] = [replace(e, level=level) for e in applying]
        plan.append((run, checks))
    return plan


def run_gate(
    current: Results | Sequence[Results],
    baseline_path: str | os.PathLike[str],
    *,
    max_drop: float = DEFAULT_MAX_DROP,
    strict: bool = False,
    junit_path: str | os.PathLike[str] | None = None,
    level: float = DEFAULT_LEVEL,
    step_summary: bool = True,
) -> GateReport:
    """Gate ``current`` (one run, or several from a pytest-benchmark file) against a baseline.

    Writes ``junit_path`` when given, and appends a markdown summary to the file named by
    ``$GITHUB_STEP_SUMMARY`` when that is set and ``step_summary`` is true. Raises
    ``UsageError``/``ResultsFileError`` for unusable input (the CLI's exit 2).
    """
    if not 0 <= max_drop < 1:
        raise UsageError(f"--max-drop must be in [0, 1), got {max_drop}")
    runs = (current,) if isinstance(current, Results) else tuple(current)
    if not runs:
        raise UsageError("nothing to gate: CURRENT has no runs")
    path = Path(baseline_path)
    notes: list[str] = []
    plan: list[tuple[Results, list[Check]]]
    if _is_toml(path):
        kind = "expectations"
        plan = _plan_against_expectations(runs, load_expectations(path), str(path), level)
    else:
        baselines, kind = load_runs(path)
        plan = _plan_against_runs(runs, baselines, str(path), max_drop, level)
        if any(b.interrupted for b in baselines):
            notes.append(f"the baseline run {path} was interrupted")
    verdicts: list[Verdict] = []
    for run, checks in plan:
        if run.interrupted:
            notes.append(f"the current run of case {run.config.get('case')!r} was interrupted")
        verdicts.extend(check.evaluate(run) for check in checks)
    report = GateReport(str(path), kind, tuple(verdicts), max_drop, strict, level, tuple(notes))
    if junit_path is not None:
        write_junit(report, junit_path)
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary and summary_path:
        append_step_summary(report, summary_path)
    return report


# --- rendering ----------------------------------------------------------------------------


def _fmt(interval: Interval | None) -> str:
    if interval is None:
        return "-"
    if not interval.estimated or interval.low == interval.high:
        return f"{interval.estimate:.2f}x"
    return f"{interval.estimate:.2f}x [{interval.low:.2f}, {interval.high:.2f}]"


def _table_rows(report: GateReport) -> tuple[list[str], list[list[str]]]:
    pct = _pct(report.level)
    multi_case = len({v.case for v in report.verdicts}) > 1
    headers = ["mode", "verdict", f"speedup [{pct} CI]"]
    if report.baseline_kind == "expectations":
        headers += ["expected"]
    else:
        headers += ["baseline", f"change [{pct} CI]", "limit"]
    rows = []
    for v in report.verdicts:
        verdict = v.verdict + (
            " (fails: --strict)" if report.strict and v.verdict == INCONCLUSIVE else ""
        )
        row = [v.mode, verdict, _fmt(v.speedup)]
        if report.baseline_kind == "expectations":
            row += [v.reference or "-"]
        else:
            row += [v.reference or "-", _fmt(v.change), v.limit or "-"]
        rows.append(([v.case] if multi_case else []) + row)
    return (["case"] if multi_case else []) + headers, rows


def _outcome(report: GateReport) -> str:
    counts = {
        k: sum(v.verdict == k for v in report.verdicts) for k in (PASS, FAIL, INCONCLUSIVE, SKIP)
    }
    tally = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    head = "PASSED" if report.passed else "FAILED"
    return f"gate {head} against {report.baseline} ({report.baseline_kind}): {tally or 'no checks'}"


def _messages(report: GateReport) -> list[str]:
    lines = []
    for v in report.verdicts:
        if v.message and v.verdict != PASS:
            lines.append(f"{v.verdict}: {v.message}")
        if v.verdict in (FAIL, INCONCLUSIVE):
            lines.extend(f"  note: {n}" for n in v.notes)
    lines.extend(f"note: {n}" for n in report.notes)
    return lines


def format_gate_report(report: GateReport) -> str:
    """The verdict table, every failure's message, and a one-line outcome."""
    headers, rows = _table_rows(report)
    parts = [tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)]
    messages = _messages(report)
    if messages:
        parts.append("\n".join(messages))
    parts.append(_outcome(report))
    return "\n\n".join(parts) + "\n"


def format_gate_markdown(report: GateReport) -> str:
    headers, rows = _table_rows(report)
    icon = ":white_check_mark:" if report.passed else ":x:"
    lines = [f"### {icon} gpubench {_outcome(report)}", ""]
    lines.append(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    messages = _messages(report)
    if messages:
        lines.append("")
        lines.extend(f"- {m.strip()}" for m in messages)
    return "\n".join(lines) + "\n\n"


def format_junit(report: GateReport) -> str:
    """JUnit XML: one test case per checked mode; FAIL (and strict INCONCLUSIVE) fail it."""
    suite = ET.Element(
        "testsuite",
        name="gpubench.gate",
        tests=str(len(report.verdicts)),
        failures=str(len(report.failures)),
        errors="0",
        skipped=str(sum(v.verdict == SKIP for v in report.verdicts)),
    )
    seen: dict[tuple[str, str], int] = {}
    for v in report.verdicts:
        n = seen[(v.case, v.mode)] = seen.get((v.case, v.mode), 0) + 1
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"gpubench.gate.{v.case}",
            name=v.mode if n == 1 else f"{v.mode} [{n}]",
            time="0",
        )
        detail = "\n".join(
            [f"verdict: {v.verdict}", f"speedup: {_fmt(v.speedup)}", f"reference: {v.reference}"]
            + ([f"change: {_fmt(v.change)}"] if v.change else [])
            + [f"note: {x}" for x in v.notes]
        )
        if report.counts_as_failure(v):
            failure = ET.SubElement(case, "failure", message=v.message or v.verdict, type=v.verdict)
            failure.text = detail
        elif v.verdict == SKIP:
            ET.SubElement(case, "skipped", message=v.message or "skipped")
        else:
            ET.SubElement(case, "system-out").text = (
                v.message + "\n" if v.message else ""
            ) + detail
    root = ET.Element("testsuites", name="gpubench gate")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(report: GateReport, path: str | os.PathLike[str]) -> Path:
    return write_text_atomic(path, format_junit(report))


def append_step_summary(report: GateReport, path: str | os.PathLike[str]) -> None:
    """Append (never overwrite: other steps write there too) the markdown summary."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(format_gate_markdown(report))
    except OSError as exc:
        raise UsageError(
            f"cannot append to $GITHUB_STEP_SUMMARY {path}: {exc.strerror or exc}"
        ) from None
