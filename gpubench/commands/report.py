"""``gpubench report``: a markdown page with tables and plots from one or more results files."""

from __future__ import annotations

import argparse
from pathlib import Path

from gpubench.api import check_writable
from gpubench.errors import UsageError
from gpubench.gate.inputs import read_measured_results
from gpubench.report.i18n import LANGS

HELP = "write a markdown report (tables, PNG plots, findings) from results JSON files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results", nargs="+", metavar="RESULTS.json", help="results files from gpubench compare"
    )
    parser.add_argument(
        "-o",
        "--out",
        metavar="PATH.md",
        help="the markdown file to write; plots go beside it (default: the first results "
        "file with .md)",
    )
    parser.add_argument(
        "--lang", choices=LANGS, default="en", help="language of the page (default: en)"
    )


def default_out(first: str) -> Path:
    return Path(first).with_suffix(".md")


def run(args: argparse.Namespace) -> int:
    runs = [read_measured_results(path) for path in args.results]
    out = Path(args.out) if args.out else default_out(args.results[0])
    if out.suffix.lower() != ".md":
        raise UsageError(f"-o must name a .md file, got {str(out)!r}")
    check_writable(out, "-o")
    labels = [Path(p).stem for p in args.results]
    # Imported here: matplotlib takes most of a second, and every gpubench command's parser
    # imports this module.
    from gpubench.report.page import write_report
    from gpubench.report.trace import trace_path

    # A trace written beside its results file (compare --trace, gpubench trace) is linked.
    traces = [t if (t := trace_path(p)).is_file() else None for p in args.results]
    print(write_report(runs, out, args.lang, labels=labels, traces=traces))
    return 0
