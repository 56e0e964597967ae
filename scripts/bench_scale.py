"""The scale table for the current tree: wall time, memory and multi-gpu's speedup at scale.

    python scripts/bench_scale.py                 # the three rows below, one after another
    python scripts/bench_scale.py --rows cnn-100  # only some of them
    python scripts/bench_scale.py --out DIR       # keep each row's results JSON in DIR

Each row is one ``gpubench compare --devices cpu:2 --modes serial,multi-gpu --rounds 2
--interleave`` in a process of its own. While it runs, this script samples the shared memory
in use (``/dev/shm``) every 0.1 s; parent and worker peak RSS, the memory plan's estimate and
the speedup come from the row's results file. Run it before and after a change, on the same
machine with nothing else running, to compare them side by side.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROWS: dict[str, tuple[str, list[str]]] = {
    "cnn-1000": ("cnn, 1000 clients x 32 samples", [
        "--case", "cnn", "--clients", "1000", "--samples-per-client", "32", "--batch-size", "32"]),
    "cnn-100": ("cnn, 100 clients x 32 samples", [
        "--case", "cnn", "--clients", "100", "--samples-per-client", "32", "--batch-size", "32"]),
    "resnet18-100": ("resnet18, 100 clients x 8 samples", [
        "--case", "resnet18", "--clients", "100", "--samples-per-client", "8",
        "--batch-size", "8"]),
}
COMMON = ["--devices", "cpu:2", "--modes", "serial,multi-gpu", "--rounds", "2", "--interleave",
          "--quiet"]


def shm_used() -> int:
    try:
        return int(shutil.disk_usage("/dev/shm").used)
    except OSError:
        return 0


def run_row(args: list[str], out: Path) -> tuple[float, int, int]:
    """(wall seconds, exit status, peak shared memory in use above the start's); the run's
    own output goes to ``out`` with ``.log``."""
    base = shm_used()
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.1):
            peak[0] = max(peak[0], shm_used() - base)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.monotonic()
    try:
        with out.with_suffix(".log").open("w", encoding="utf-8") as log:
            proc = subprocess.run([sys.executable, "-m", "gpubench", "compare", *args, *COMMON,
                                   "--out", str(out)], stdout=log, stderr=subprocess.STDOUT,
                                  check=False)
    finally:
        stop.set()
        watcher.join()
    return time.monotonic() - t0, proc.returncode, peak[0]


def gib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**30:.2f} GB"


def summarise(label: str, wall: float, rc: int, shm: int, path: Path) -> list[str]:
    if not path.exists():
        return [label, f"{wall:.0f} s", f"exit {rc}", "-", "-", "-", "-"]
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    modes = {m["name"]: m for m in data.get("modes", [])}
    mg = modes.get("multi-gpu", {})
    plan = data.get("memory_plan") or {}
    measured = plan.get("measured", {})
    workers = [b for b in measured.get("worker_rss_bytes", {}).get("multi-gpu", []) if b]
    speedup = mg.get("speedup_vs_serial")
    same = mg.get("same_result")
    estimate = plan.get("estimate", {}).get("parent_bytes")
    return [
        label,
        f"{wall:.0f} s",
        gib(measured.get("parent_peak_rss_bytes")),
        gib(max(workers)) if workers else "-",
        gib(shm),
        "-" if speedup is None else f"{speedup:.2f}x" + ("" if same else " (differs)"),
        gib(estimate),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated of {', '.join(ROWS)}")
    p.add_argument("--out", default=None, help="folder for each row's results JSON")
    args = p.parse_args(argv)
    names = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in names if r not in ROWS]
    if unknown:
        print(f"bench_scale: unknown row(s) {', '.join(unknown)}; rows: {', '.join(ROWS)}",
              file=sys.stderr)
        return 2
    folder = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    table = []
    worst = 0
    for name in names:
        label, row_args = ROWS[name]
        path = folder / f"{name}.json"
        wall, rc, shm = run_row(row_args, path)
        worst = max(worst, rc)
        table.append(summarise(label, wall, rc, shm, path))
    from tabulate import tabulate

    headers = ["run (--devices cpu:2 --modes serial,multi-gpu --rounds 2 --interleave)",
               "wall", "parent peak RSS", "each worker", "shared memory", "multi-gpu",
               "plan: parent"]
    print(tabulate(table, headers=headers, tablefmt="github"))
    print(f"results: {folder}")
    return worst


if __name__ == "__main__":
    sys.exit(main())
