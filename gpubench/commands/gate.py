"""``gpubench gate``: verdicts on speedups against a baseline; exit 0 pass, 1 regression.

The verdicts come from :mod:`gpubench.gate` (pure), the text from
:mod:`gpubench.report.gate_pages`; :func:`gpubench.api.check_gate` writes ``--junit`` and, on
GitHub Actions, ``$GITHUB_STEP_SUMMARY``; this module prints the verdicts.
"""

from __future__ import annotations

import argparse

from gpubench.api import check_gate, check_writable
from gpubench.commands.arguments import add_fraction_argument, add_inconclusive_arguments
from gpubench.report.gate_pages import format_gate_report

HELP = "check a run's speedups against a baseline run or an expectations file (for CI)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "current",
        metavar="CURRENT",
        help="results JSON of the run to check (written by gpubench compare --out), or "
        "pytest-benchmark JSON (pytest bench_cases --benchmark-json)",
    )
    against = parser.add_mutually_exclusive_group(required=True)
    against.add_argument(
        "--baseline",
        metavar="BASELINE",
        help="an earlier results/pytest-benchmark JSON file, or a TOML expectations file",
    )
    against.add_argument(
        "--history",
        metavar="STORE",
        help="a history store (gpubench history add): each mode against the current level "
        "of its series (same testbed and work), rather than one stored run",
    )
    add_fraction_argument(parser, "largest allowed fall of a speedup vs a baseline run or "
                          "the current level of its history, e.g. 0.10 or 10%%")
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
        history=args.history,
        max_drop=args.max_drop,
        inconclusive="fail" if fails_inconclusive(args) else "pass",
        junit_path=args.junit,
    )
    print(format_gate_report(report), end="")
    return report.exit_code
