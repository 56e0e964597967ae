"""Refuse results measured beside other programs' load.

    python scripts/quiet_check.py FILE_OR_DIR ...

Every measured mode of every CPU-slot results file (a folder is searched for ``*.json``
results files) must record other programs' load (``other_load_pct``, per device) at most
``OTHER_LOAD_LIMIT_PCT``. For each mode and device it prints the recorded figure beside an
estimate read apart from it, from the file's own monitor timeline: the mean of the samples
taken during the mode's measured rounds of the slot's utilisation less the run's own share
(``other_util``; where a sample lacks it, ``util - own_util`` when own_util was read). Exit
status 1 names every file and mode that ran beside more than the limit or recorded nothing;
2 for a file that is not a results file. GPU results files are listed and left alone (their
other load is NVML's, read on the GPU machine).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from gpubench.results import (
    OTHER_LOAD_LIMIT_PCT,
    PHASE_ROUND,
    STATUS_OK,
    Results,
    ResultsFileError,
    read_results,
)


def results_files(paths: list[str]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from (f for f in sorted(p.rglob("*.json"))
                        if f.name != "summary.json" and not f.name.endswith(".trace.json"))
        else:
            yield p


def timeline_estimate(results: Results, mode: str, device: str) -> float | None:
    """The mean other load of ``device`` over ``mode``'s measured-round samples."""
    monitor = results.monitor_record
    other = monitor.timeline.series("other_util", device)
    util = monitor.timeline.series("util", device)
    own = monitor.timeline.series("own_util", device)
    values: list[float] = []
    for i in monitor.sample_indices(mode, PHASE_ROUND, column="other_util"):
        if other and (o := other[i]) is not None:
            values.append(o)
        elif util and own and (u := util[i]) is not None and (w := own[i]) is not None:
            values.append(u - w)
    return max(0.0, sum(values) / len(values)) if values else None


def check(path: Path, limit: float) -> list[str]:
    """The refusals for one file (printing its table)."""
    results = read_results(path)
    if not results.on_cpu_slots:
        print(f"{path}: GPU results, other load read by NVML there: not checked here")
        return []
    refused: list[str] = []
    for m in results.modes:
        if m.status != STATUS_OK:
            continue
        for device in m.devices:
            pct = m.other_load_pct.get(device)
            est = timeline_estimate(results, m.name, device)
            shown = "—" if pct is None else f"{pct:.1f}%"
            shown_est = "—" if est is None else f"{est:.1f}%"
            print(f"{path}: {m.name} on {device}: other load {shown} "
                  f"(timeline estimate {shown_est})")
            if pct is None:
                refused.append(f"{path}: {m.name} on {device} records no other load")
            elif pct > limit or (est is not None and est > limit):
                worst = max(pct, est or 0.0)
                refused.append(f"{path}: {m.name} on {device} ran beside {worst:.1f}% other "
                               f"load (limit {limit:g}%)")
    return refused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="results files or folders of them")
    parser.add_argument("--limit", type=float, default=OTHER_LOAD_LIMIT_PCT,
                        help="the most other load allowed, %% of a slot (default %(default)s)")
    args = parser.parse_args(argv)
    refused: list[str] = []
    for path in results_files(args.paths):
        try:
            refused += check(path, args.limit)
        except (OSError, ResultsFileError) as e:
            print(f"quiet_check: {path}: {e}", file=sys.stderr)
            return 2
    for line in refused:
        print(f"refused: {line}", file=sys.stderr)
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
