"""``gpubench trace``: a results file as one Chrome trace event file."""

from __future__ import annotations

import argparse
from pathlib import Path

from gpubench.api import check_writable, write_trace
from gpubench.results import read_results

HELP = "write a results file's run as a Chrome trace (ui.perfetto.dev, chrome://tracing)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", metavar="RESULTS.json", help="a results file of gpubench compare")
    parser.add_argument("-o", "--out", metavar="PATH.json",
                        help="the trace to write (default: RESULTS.trace.json beside it)")


def run(args: argparse.Namespace) -> int:
    from gpubench.report.trace import trace_path

    out = Path(args.out) if args.out else trace_path(args.results)
    check_writable(out, "-o")
    print(write_trace(read_results(args.results), out))
    return 0
