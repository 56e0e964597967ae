"""The history store: a plain file of JSON lines, one line per run and mode.

Why JSON lines: a CI job keeps the store in a branch or a cache, and a line per entry makes
every add a diff of whole lines, lets a reader skip one bad line and keep the rest, and
needs nothing but the standard library (``jq`` and ``grep`` read it too).

- **Append-only**: an add never changes a line it did not write; it adds the run's lines at
  the end. The same run added again (same results, by :func:`~.entries.run_id`) adds nothing.
- **Capped** (``MAX_PER_SERIES``): an add that takes a series (testbed, work, mode) beyond
  its cap drops that series' oldest lines, in store order; other series are untouched. Lines
  this gpubench cannot read (corrupt, or of a newer schema) are kept as they are.
- **Two writers at once**: an add holds an exclusive ``fcntl`` lock on ``PATH.lock`` while it
  reads the store and writes it anew through :func:`gpubench.output.write_atomic`, so a
  second add waits for the first and a reader sees the old store or the new one, never half.
- **Reading** never fails on one line: a corrupt line is reported (its line number and why)
  and skipped; a line of a newer schema is skipped with a note to upgrade.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gpubench.errors import UsageError
from gpubench.history.entries import HISTORY_SCHEMA, Entry
from gpubench.output import write_atomic

DEFAULT_STORE = "gpubench-history.jsonl"
MAX_PER_SERIES = 1000
"""The newest lines a series keeps (about three years of one CI run a day)."""


@dataclass(frozen=True)
class Store:
    """What a store file holds: its entries in store order, the lines kept unread, notes."""

    path: Path
    entries: tuple[Entry, ...]
    notes: tuple[str, ...] = ()
    unread: tuple[tuple[int, str], ...] = ()  # (line number, text) of lines not understood


def _parse(number: int, line: str, where: str) -> tuple[Entry | None, str | None]:
    try:
        data = json.loads(line)
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        version = data.get("history_schema")
        if isinstance(version, int) and version > HISTORY_SCHEMA:
            return None, (f"{where}:{number}: schema {version} is newer than this gpubench "
                          f"understands ({HISTORY_SCHEMA}); skipped (upgrade gpubench)")
        if version != HISTORY_SCHEMA:
            raise ValueError(f"history_schema {version!r}")
        return Entry.from_dict(data), None
    except (ValueError, TypeError, KeyError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        return None, f"{where}:{number}: not a history entry ({reason}); skipped"


def read_store(path: str | os.PathLike[str], *, missing_ok: bool = False) -> Store:
    """The store at ``path``; a missing file is an empty store when ``missing_ok``, else a
    one-line ``UsageError`` (as is a file that cannot be read at all)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return Store(p, ())
        raise UsageError(f"no history store at {p} (make one with gpubench history add)") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not a text file"
        raise UsageError(f"cannot read {p}: {why or exc}") from None
    entries: list[Entry] = []
    notes: list[str] = []
    unread: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        entry, note = _parse(number, line, str(p))
        if entry is not None:
            entries.append(entry)
        else:
            unread.append((number, line))
        if note:
            notes.append(note)
    return Store(p, tuple(entries), tuple(notes), tuple(unread))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the store's lock: an exclusive ``flock`` on ``PATH.lock`` (made when missing)."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise UsageError(f"cannot lock {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _pruned(lines: list[tuple[Entry | None, str]], cap: int) -> list[str]:
    """The lines, with each series' oldest entries beyond ``cap`` dropped."""
    left: dict[object, int] = {}
    for entry, _ in lines:
        if entry is not None:
            left[entry.series] = left.get(entry.series, 0) + 1
    kept = []
    for entry, text in lines:
        if entry is not None and left[entry.series] > cap:
            left[entry.series] -= 1
            continue
        kept.append(text)
    return kept


@dataclass(frozen=True)
class Added:
    """What an add did: lines added, runs already there, lines dropped by the cap, notes."""

    added: int
    already: int
    pruned: int
    notes: tuple[str, ...] = ()


def add_entries(
    path: str | os.PathLike[str], entries: Sequence[Entry], *, cap: int = MAX_PER_SERIES
) -> Added:
    """Append ``entries`` not yet in the store (by run and mode), then apply the cap."""
    p = Path(path)
    with _locked(p):
        store = read_store(p, missing_ok=True)
        seen = {(e.run, e.mode) for e in store.entries}
        new = []
        for entry in entries:
            if (entry.run, entry.mode) not in seen:
                seen.add((entry.run, entry.mode))
                new.append(entry)
        lines = _store_lines(store) + [(e, e.to_line().rstrip("\n")) for e in new]
        kept = _pruned(lines, cap)
        if new or len(kept) != len(lines):
            write_atomic(p, "".join(line + "\n" for line in kept))
    return Added(len(new), len(entries) - len(new), len(lines) - len(kept), store.notes)


def _store_lines(store: Store) -> list[tuple[Entry | None, str]]:
    """Every line of the store in order, as (entry or None, its text)."""
    try:
        text = store.path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out: list[tuple[Entry | None, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            out.append((_parse(number, line, "")[0], line))
    return out
