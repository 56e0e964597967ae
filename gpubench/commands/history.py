"""``gpubench history``: a CI store of speedups and the change points in it.

``add`` appends results files to the store, ``check`` finds change points (exit 1 when the
latest is a drop beyond ``--max-drop``), ``plot`` draws the series, ``export`` writes them as
Otava's CSV. The library does the work (:mod:`gpubench.history`); this module parses and
prints.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from gpubench.api import check_writable
from gpubench.commands.arguments import add_fraction_argument
from gpubench.errors import UsageError
from gpubench.gate.inputs import read_measured_results
from gpubench.history import (
    DEFAULT_STORE,
    FORMATS,
    add_entries,
    check_history,
    entries_of,
    otava_tables,
    read_store,
)
from gpubench.output import write_atomic
from gpubench.report.history_pages import format_added, format_history_check

HELP = "keep a store of speedups across CI runs; find change points; plot; export"


def _store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=DEFAULT_STORE, metavar="PATH",
                   help=f"the JSON-lines history store (default: {DEFAULT_STORE})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add results files to the store")
    add.add_argument("results", nargs="+", metavar="RESULTS.json")
    _store(add)
    check = sub.add_parser("check", help="change points per testbed, work and mode; exit 1 "
                           "when the latest is a drop beyond --max-drop")
    _store(check)
    add_fraction_argument(check, "largest allowed drop of the latest level from the one "
                          "before, e.g. 0.10 or 10%%")
    plot = sub.add_parser("plot", help="speedup per commit, segment levels and change points")
    _store(plot)
    plot.add_argument("-o", "--out", required=True, metavar="PNG", help="the PNG to write")
    export = sub.add_parser("export", help="the series as CSV for Apache Otava")
    _store(export)
    export.add_argument("--format", choices=FORMATS, default=FORMATS[0])
    export.add_argument("-o", "--out", metavar="PATH", help="the CSV file (one testbed and "
                        "work), or a folder for one file per testbed and work (default: stdout)")


def _add(args: argparse.Namespace) -> int:
    entries = []
    for path in args.results:
        entries += entries_of(read_measured_results(path), source=str(path))
    check_writable(args.store, "--store")
    print(format_added(add_entries(args.store, entries), args.store), end="")
    return 0


def _check(args: argparse.Namespace) -> int:
    store = read_store(args.store)
    report = check_history(store.entries, max_drop=args.max_drop, notes=store.notes)
    print(format_history_check(report), end="")
    return report.exit_code


def _plot(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"-o must name a .png file, got {str(out)!r}")
    store = read_store(args.store)
    if not store.entries:
        raise UsageError(f"{args.store}: no entries to plot")
    check_writable(out, "-o")
    from gpubench.report.history_plots import draw_history  # matplotlib: only when drawing

    for note in store.notes:
        print(note)
    panels = draw_history(check_history(store.entries).series, out)
    print(f"{out}: {len(panels)} panel(s)")
    return 0


def _export(args: argparse.Namespace) -> int:
    store = read_store(args.store)
    tables = otava_tables(store.entries)
    if not tables:
        raise UsageError(f"{args.store}: no entries to export")
    if args.out is None or not Path(args.out).is_dir():
        if len(tables) > 1:
            raise UsageError(f"{len(tables)} testbeds and works in the store: give -o FOLDER "
                             "for one CSV file each")
        if args.out is None:
            print(tables[0].text, end="")
        else:
            write_atomic(args.out, tables[0].text)
        return 0
    for i, table in enumerate(tables, 1):
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", table.work.case or "case")
        path = Path(args.out) / f"history-{name}-{i}.csv"
        write_atomic(path, table.text)
        print(f"{path}: {table.work.describe()} — {table.testbed.describe()}")
    return 0


ACTIONS = {"add": _add, "check": _check, "plot": _plot, "export": _export}


def run(args: argparse.Namespace) -> int:
    return ACTIONS[args.action](args)
