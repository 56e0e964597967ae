"""``gpubench gate``: verdicts on speedups against a baseline; exit 0 pass, 1 regression.

The verdicts come from :mod:`gpubench.gate` (pure), the text from
:mod:`gpubench.report.gate_pages`; :func:`gpubench.run.api.check_gate` writes ``--junit`` and, on
GitHub Actions, ``$GITHUB_STEP_SUMMARY``; this module prints the verdicts.
"""

from __future__ import annotations

import argparse

from gpubench.commands.arguments import add_inconclusive_arguments
from gpubench.gate import DEFAULT_MAX_DROP
from gpubench.report.gate_pages import format_gate_report
from gpubench.run.api import check_gate, check_writable

HELP = "check a run's speedups against a baseline run or an expectations file (for CI)"


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
    add_inconclusive_arguments(parser)
    parser.add_argument("--junit", metavar="PATH", help="also write JUnit XML, one test per mode")


def fails_inconclusive(args: argparse.Namespace) -> bool:
    """The command line asked for INCONCLUSIVE to fail (``--inconclusive fail`` or ``--strict``)."""
    return bool(args.inconclusive == "fail")


def run(args: argparse.Namespace) -> int:
    if args.junit:
        check_writable(args.junit, "--junit")
    report = check_gate(
        args.current,
        args.baseline,
        max_drop=args.max_drop,
        inconclusive="fail" if fails_inconclusive(args) else "pass",
        junit_path=args.junit,
    )
    print(format_gate_report(report), end="")
    return report.exit_code
