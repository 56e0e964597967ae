"""``gpubench gate``: verdicts on speedups against a baseline; exit 0 pass, 1 regression.

The verdicts come from :mod:`gpubench.gate` (pure), the text from
:mod:`gpubench.report.gate_pages`; this module writes them: stdout, ``--junit`` and, on
GitHub Actions, ``$GITHUB_STEP_SUMMARY``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from gpubench.errors import UsageError
from gpubench.gate import DEFAULT_MAX_DROP, GateReport, evaluate_gate, load_runs
from gpubench.report.gate_pages import format_gate_markdown, format_gate_report, format_junit
from gpubench.results import Results, write_text_atomic
from gpubench.stats import DEFAULT_LEVEL

HELP = "check a run's speedups against a baseline run or an expectations file (for CI)"

__all__ = ["HELP", "add_arguments", "append_step_summary", "format_gate_report", "run",
           "run_gate", "write_junit"]  # fmt: skip


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
    """Gate ``current``, write ``junit_path`` when given, and append the markdown summary to
    ``$GITHUB_STEP_SUMMARY`` when that is set and ``step_summary`` is true."""
    report = evaluate_gate(current, baseline_path, max_drop=max_drop, strict=strict, level=level)
    if junit_path is not None:
        write_junit(report, junit_path)
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary and summary_path:
        append_step_summary(report, summary_path)
    return report


def _fraction(text: str) -> float:
    s = text.strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a fraction or a percentage: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (or 0%..99%), got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "current",
        metavar="CURRENT",
        help="results JSON of the run to check (written by gpubench compare --out), or "
        "pytest-benchmark JSON (pytest bench_cases --benchmark-json)",
    )
    parser.add_argument(
        "--baseline",
        required=True,
        metavar="BASELINE",
        help="an earlier results/pytest-benchmark JSON file, or a TOML expectations file",
    )
    parser.add_argument(
        "--max-drop",
        type=_fraction,
        default=DEFAULT_MAX_DROP,
        metavar="FRACTION",
        help="largest allowed fall of a speedup vs a baseline run, e.g. 0.10 or 10%% "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail on INCONCLUSIVE verdicts too (the interval straddles the limit)",
    )
    parser.add_argument("--junit", metavar="PATH", help="also write JUnit XML, one test per mode")


def run(args: argparse.Namespace) -> int:
    runs, _ = load_runs(args.current)
    report = run_gate(
        runs, args.baseline, max_drop=args.max_drop, strict=args.strict, junit_path=args.junit
    )
    print(format_gate_report(report), end="")
    return report.exit_code
