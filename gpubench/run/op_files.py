"""``--profile-ops``: the profiler's files kept beside the results file that names them.

Workers write their torch.profiler traces into a temporary folder while the run goes; once
the results have a place (``OUT.json``), :func:`keep_op_traces` moves each file into
``OUT.ops/<mode>/`` and points the results at it, and removes the emptied temporary folders,
so ``gpubench trace OUT.json`` can merge them later and nothing is left behind in the
temporary directory.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import replace
from pathlib import Path

from gpubench.results import ModeResult, Results

TEMP_PREFIX = "gpubench-ops-"


def ops_folder(out: Path) -> Path:
    """Where the profiler files of the results file ``out`` go: ``OUT.ops`` beside it."""
    return out.parent / f"{out.stem}.ops"


def keep_op_traces(results: Results, out: str | Path) -> Results:
    """``results`` with every profiler file moved beside ``out`` (files already gone stay
    named as they were: the trace lists them as unreadable)."""
    folder = ops_folder(Path(out))
    emptied: set[Path] = set()
    modes: list[ModeResult] = []
    for m in results.modes:
        p = m.profiled
        if p is None or not p.traces:
            modes.append(m)
            continue
        traces = []
        for t in p.traces:
            src = Path(t.path)
            if not src.is_file():
                traces.append(t)
                continue
            dest = folder / m.name / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(src, dest)
            emptied.add(src.parent)
            traces.append(replace(t, path=str(dest.resolve())))
        modes.append(replace(m, profiled=replace(p, traces=tuple(traces))))
    for d in emptied:
        _remove_empty_temp(d)
    return results.with_modes(tuple(modes))


def _remove_empty_temp(folder: Path) -> None:
    """``folder`` and its parents up to the run's temporary root, each if empty (nothing
    outside such a root is touched)."""
    chain = (folder, *folder.parents)
    root = next((i for i, d in enumerate(chain) if d.name.startswith(TEMP_PREFIX)), None)
    if root is None:
        return
    for d in chain[: root + 1]:
        with contextlib.suppress(OSError):
            d.rmdir()
