"""``history export --format otava-csv``: a store's series as CSV that Apache Otava reads.

Otava's CSV source takes one file per test: a time column, attribute columns, and one
column per metric. The export writes one table per testbed and work, in time order: ``time``
(the results file's ``created_utc``), ``commit``, then one column per mode holding its
speedup over serial (empty where the run had no usable speedup: beside other programs'
load, a result that differs, a failed mode). Otava's config for one such file::

    tests:
      cpu-slots:
        type: csv
        file: history-cnn.csv
        time_column: time
        attributes: [commit]
        metrics: [multi-gpu, multiprocess, threaded]
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from gpubench.history.entries import Entry, Testbed, Work

FORMATS = ("otava-csv",)


@dataclass(frozen=True)
class Table:
    """One CSV table: the entries of one testbed and work, one row per run."""

    testbed: Testbed
    work: Work
    text: str


def _rows(entries: Sequence[Entry]) -> tuple[list[str], list[list[str]]]:
    modes: list[str] = []
    runs: dict[str, dict[str, object]] = {}
    for order, entry in enumerate(entries):
        if entry.mode not in modes:
            modes.append(entry.mode)
        row = runs.setdefault(entry.run, {"time": entry.time, "commit": entry.commit or "",
                                          "order": order})
        if entry.usable:
            row[entry.mode] = f"{entry.speedup:.4f}"
    ordered = sorted(runs.values(), key=lambda r: (str(r["time"]), int(str(r["order"]))))
    header = ["time", "commit", *modes]
    return header, [[str(r.get(c, "")) for c in header] for r in ordered]


def otava_tables(entries: Sequence[Entry]) -> list[Table]:
    """A table per testbed and work, in the order they first appear."""
    groups: dict[tuple[Testbed, Work], list[Entry]] = {}
    for entry in entries:
        groups.setdefault((entry.testbed, entry.work), []).append(entry)
    tables = []
    for (testbed, work), members in groups.items():
        header, rows = _rows(members)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        tables.append(Table(testbed, work, out.getvalue()))
    return tables
