"""``gpubench gate``: verdicts on speedups against a baseline; exit 0 pass, 1 regression."""

from __future__ import annotations

import argparse

from gpubench.gate import DEFAULT_MAX_DROP, format_gate_report, load_runs, run_gate

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
        help="results JSON of the run to check (gpubench compare --json, or pytest-benchmark JSON)",
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
