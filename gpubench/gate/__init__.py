"""The regression gate: verdicts on speedups against a baseline, for CI.

A baseline is one of:

- an earlier gpubench results file (or pytest-benchmark JSON file written by the suite in
  ``bench_cases/``): a mode FAILs when the confidence interval of
  ``current speedup / baseline speedup`` lies entirely below ``1 - max_drop``;
- a TOML expectations file checked into the repository (see ``docs/gating.md``)::

      [[expect]]
      case = "cnn"
      devices = 2
      device_kind = "cpu"
      mode = "multi-gpu"
      min_speedup = 1.5
      why = "two slots train clients in parallel"

  a mode FAILs when the interval of its speedup lies entirely below ``min_speedup`` (or
  entirely above ``max_speedup``).

Each check is a parsed object whose ``evaluate(run)`` returns a :class:`Verdict`: PASS, FAIL,
INCONCLUSIVE (the interval straddles the limit: it counts as ``inconclusive``, "pass" by
default or "fail") or SKIP (nothing to compare). A mode that failed, or whose result differs
from serial's, FAILs whatever its speed. Runs that did not measure the same work are refused (``UsageError``, exit 2).

The package: :mod:`.keys` (what a run is, comparability), :mod:`.checks` (pure verdicts),
:mod:`.inputs` (readers), :mod:`.verdicts` (the data). Rendering lives in
:mod:`gpubench.report.gate_pages`; writing JUnit and ``$GITHUB_STEP_SUMMARY`` in
:func:`gpubench.api.check_gate` (``gpubench.check_gate(...)``). Never imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from gpubench.errors import UsageError
from gpubench.gate.checks import Expectation, SpeedupDropCheck, differs_reason, result_of
from gpubench.gate.inputs import (
    benchmark_runs,
    load_expectations,
    load_runs,
    read_measured_results,
    require_measured,
)
from gpubench.gate.keys import RunKey, device_count, device_kind, differences, run_key
from gpubench.gate.verdicts import (
    DEFAULT_INCONCLUSIVE,
    DEFAULT_MAX_DROP,
    FAIL,
    INCONCLUSIVE,
    INCONCLUSIVE_POLICIES,
    PASS,
    SKIP,
    Check,
    GateReport,
    Verdict,
)
from gpubench.results import Results
from gpubench.stats import DEFAULT_LEVEL, REFERENCE_MODE

__all__ = [
    "DEFAULT_INCONCLUSIVE",
    "DEFAULT_LEVEL",
    "DEFAULT_MAX_DROP",
    "FAIL",
    "INCONCLUSIVE",
    "INCONCLUSIVE_POLICIES",
    "PASS",
    "REFERENCE_MODE",
    "SKIP",
    "Check",
    "Expectation",
    "GateReport",
    "RunKey",
    "SpeedupDropCheck",
    "Verdict",
    "benchmark_runs",
    "device_count",
    "device_kind",
    "differences",
    "differs_reason",
    "evaluate_gate",
    "load_expectations",
    "load_runs",
    "plan_against_expectations",
    "plan_against_runs",
    "read_measured_results",
    "require_measured",
    "result_of",
    "run_key",
]

Plan = list[tuple[Results, list[Check]]]


def plan_against_runs(
    runs: Sequence[Results],
    baselines: Sequence[Results],
    source: str,
    max_drop: float = DEFAULT_MAX_DROP,
    level: float = DEFAULT_LEVEL,
) -> Plan:
    """One drop check per mode of each run, against the baseline run of the same work."""
    plan: Plan = []
    for run in runs:
        key = run_key(run)
        same_case = [b for b in baselines if run_key(b).case == key.case]
        if not same_case:
            raise UsageError(
                f"cannot gate: CURRENT has {key.describe()} but {source} has "
                + "; ".join(run_key(b).describe() for b in baselines)
                + " (different case)"
            )
        matching = [b for b in same_case if not differences(key, run_key(b))]
        if not matching:
            diffs = differences(key, run_key(same_case[0]))
            raise UsageError(
                f"cannot gate: CURRENT and {source} did not measure the same work: they differ "
                f"in {' and '.join(diffs)}; gate runs of the same case, devices and training "
                "settings"
            )
        baseline = matching[0]
        names = [m.name for m in run.modes]
        names += [m.name for m in baseline.modes if m.name not in names]
        case = str(key.case)
        checks: list[Check] = [SpeedupDropCheck(case, n, baseline, max_drop, level) for n in names]
        plan.append((run, checks))
    return plan


def plan_against_expectations(
    runs: Sequence[Results],
    expectations: Sequence[Expectation],
    source: str,
    level: float = DEFAULT_LEVEL,
) -> Plan:
    """The expectations that apply to each run, in the run's mode order."""
    plan: Plan = []
    for run in runs:
        key = run_key(run)
        applying = [e for e in expectations if e.applies_to(key)]
        if not applying:
            covered = sorted({e.key().describe() for e in expectations})
            raise UsageError(
                f"cannot gate: no expectation in {source} applies to CURRENT ({key.describe()}); "
                f"it has expectations for: {'; '.join(covered)}"
            )
        order = {m.name: i for i, m in enumerate(run.modes)}
        applying.sort(key=lambda e: order.get(e.mode, len(order)))
        checks: list[Check] = [replace(e, level=level) for e in applying]
        plan.append((run, checks))
    return plan


def evaluate_gate(
    current: Results | Sequence[Results],
    baseline_path: str | os.PathLike[str],
    *,
    max_drop: float = DEFAULT_MAX_DROP,
    inconclusive: str = DEFAULT_INCONCLUSIVE,
    strict: bool = False,
    level: float = DEFAULT_LEVEL,
) -> GateReport:
    """Gate ``current`` (one run, or several from a pytest-benchmark file) against a baseline.

    ``inconclusive``: what an INCONCLUSIVE verdict counts as, "pass" or "fail"; ``strict``
    is the older spelling of ``inconclusive="fail"``. Reads the baseline file and writes
    nothing. Raises ``UsageError``/``ResultsFileError`` for unusable input and for runs that
    are not comparable (the CLI's exit 2).
    """
    if not 0 <= max_drop < 1:
        raise UsageError(f"--max-drop must be in [0, 1), got {max_drop}")
    if inconclusive not in INCONCLUSIVE_POLICIES:
        raise UsageError(
            f"--inconclusive must be {' or '.join(INCONCLUSIVE_POLICIES)}, got {inconclusive!r}"
        )
    policy = "fail" if strict else inconclusive
    runs = (current,) if isinstance(current, Results) else tuple(current)
    if not runs:
        raise UsageError("nothing to gate: CURRENT has no runs")
    for run in runs:
        require_measured(run, "CURRENT")
    path = Path(baseline_path)
    notes: list[str] = []
    plan: Plan
    if path.suffix.lower() == ".toml":
        kind = "expectations"
        plan = plan_against_expectations(runs, load_expectations(path), str(path), level)
    else:
        baselines, kind = load_runs(path)
        plan = plan_against_runs(runs, baselines, str(path), max_drop, level)
        if any(b.interrupted for b in baselines):
            notes.append(f"the baseline run {path} was interrupted")
    verdicts: list[Verdict] = []
    for run, checks in plan:
        if run.interrupted:
            notes.append(f"the current run of case {run.config.case!r} was interrupted")
        verdicts.extend(check.evaluate(run) for check in checks)
    return GateReport(str(path), kind, tuple(verdicts), max_drop, policy, level, tuple(notes))
