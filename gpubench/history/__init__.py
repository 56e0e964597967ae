"""A CI history of speedups per testbed and work, and change points in it (readers only).

- :mod:`.entries`: one entry per run and mode (testbed, work, commit, speedup, conditions);
- :mod:`.store`: the JSON-lines store (append-only, capped, locked, lenient reader);
- :mod:`.changes`: e-divisive means with a Student t-test on a series of log speedups;
- :mod:`.check`: the series of a store, their segments and change points, the verdict;
- :mod:`.gate`: ``gpubench gate --history``, a run against its series' current level;
- :mod:`.export`: Otava-compatible CSV.

The plot lives in :mod:`gpubench.report.history_plots`. Never imports torch.
"""

from __future__ import annotations

from gpubench.history.changes import MAX_P, MIN_MAGNITUDE, MIN_SIDE, Split, change_points
from gpubench.history.check import Change, HistoryCheck, Segment, Series, check_history, series_of
from gpubench.history.entries import HISTORY_SCHEMA, Entry, Testbed, Work, entries_of, run_id
from gpubench.history.export import FORMATS, Table, otava_tables
from gpubench.history.gate import MIN_SEGMENT, gate_against_history
from gpubench.history.store import (
    DEFAULT_STORE,
    MAX_PER_SERIES,
    Added,
    Store,
    add_entries,
    read_store,
)

__all__ = [
    "DEFAULT_STORE",
    "FORMATS",
    "HISTORY_SCHEMA",
    "MAX_P",
    "MAX_PER_SERIES",
    "MIN_MAGNITUDE",
    "MIN_SEGMENT",
    "MIN_SIDE",
    "Added",
    "Change",
    "Entry",
    "HistoryCheck",
    "Segment",
    "Series",
    "Split",
    "Store",
    "Table",
    "Testbed",
    "Work",
    "add_entries",
    "change_points",
    "check_history",
    "entries_of",
    "gate_against_history",
    "otava_tables",
    "read_store",
    "run_id",
    "series_of",
]
