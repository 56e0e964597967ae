"""Peak memory of each mode, all its processes together (PSS), from one `compare` run.

    python scripts/measure_memory.py --clients 10 --batch-size 128 --devices cpu:2 \\
        --modes serial,multi-gpu,ray,flower --out /tmp/run.json

Takes the same arguments as ``gpubench compare``. While each mode runs (cold start to
close), a thread sums the PSS (proportional set size: shared pages split between the
processes that map them, so the sum does not count a shared library twice) of every process
below this one: worker processes, a local Ray's head, raylet and actors, Flower's driver.
This process itself (the harness, shared by every mode) is reported apart. The modes run one
after another (``--sequential``), so that each sum holds that mode's processes only. Per mode the peak
sum goes into the results file under ``extra`` (``pss_peak_bytes``, ``pss_processes``,
``parent_pss_peak_bytes``) and a table of round time, cold start and peak PSS is printed.
"""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import replace
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpubench.machine.isolation import bound_openmp_wait  # noqa: E402

bound_openmp_wait()  # as the command line does, before anything loads torch

from gpubench.api import compare  # noqa: E402
from gpubench.cli import run_config  # noqa: E402
from gpubench.results import write_results  # noqa: E402


def pss(p: psutil.Process) -> int:
    try:
        return int(p.memory_full_info().pss)
    except (psutil.Error, AttributeError):
        return 0


class PssWatcher:
    """Samples the PSS of this process's descendants, tagged with the mode running."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.mode: str | None = None
        self.peaks: dict[str, tuple[int, int]] = {}  # mode -> (bytes, processes)
        self.parent: dict[str, int] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.me = psutil.Process()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def progress(self, mode: str, phase: str, index: int, total: int) -> None:
        with self.lock:
            self.mode = None if phase in ("done", "failed") else mode
        if phase in ("done", "failed"):
            print(f"  {mode}: {phase}", file=sys.stderr)

    def run(self) -> None:
        while not self.stop.wait(self.interval_s):
            with self.lock:
                mode = self.mode
            if mode is None:
                continue
            try:
                procs = self.me.children(recursive=True)
            except psutil.Error:
                continue
            total = sum(pss(p) for p in procs)
            with self.lock:
                if mode != self.mode:
                    continue
                if total > self.peaks.get(mode, (0, 0))[0]:
                    self.peaks[mode] = (total, len(procs))
                self.parent[mode] = max(self.parent.get(mode, 0), pss(self.me))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="results JSON with the PSS figures in extra")
    p.add_argument("--pss-interval", type=float, default=0.25, help="seconds between samples")
    args, run_options = p.parse_known_args(argv)  # the rest are compare's options
    # One mode at a time: interleaved, every mode's workers are alive at once and a mode's
    # sum would hold the others' processes too.
    config = replace(run_config(run_options), interleave=False)
    watcher = PssWatcher(args.pss_interval)
    watcher.thread.start()
    try:
        results = compare(
            config,
            progress=watcher.progress,
            counterfactual=False,  # the monitor runs, as in compare
            command="scripts/measure_memory.py " + " ".join(argv or sys.argv[1:]),
        )
    finally:
        watcher.stop.set()
        watcher.thread.join()
    modes = []
    for m in results.modes:
        peak, procs = watcher.peaks.get(m.name, (0, 0))
        extra = {**m.extra, "pss_peak_bytes": peak, "pss_processes": procs,
                 "parent_pss_peak_bytes": watcher.parent.get(m.name)}
        modes.append(replace(m, extra=extra))
    results = results.with_modes(tuple(modes))
    if args.out:
        write_results(results, args.out)
    print(f"{'mode':<12}{'status':<8}{'round s':>9}{'cold s':>9}{'PSS MiB':>10}{'procs':>7}"
          f"{'parent MiB':>12}  diff vs serial")
    for m in results.modes:
        med = m.median_round_s
        print(f"{m.name:<12}{m.status:<8}{(med or 0):>9.3f}{(m.cold_start_s or 0):>9.2f}"
              f"{m.extra['pss_peak_bytes'] / 2**20:>10.0f}{m.extra['pss_processes']:>7}"
              f"{(m.extra['parent_pss_peak_bytes'] or 0) / 2**20:>12.0f}  "
              f"{m.max_abs_diff_vs_serial if m.max_abs_diff_vs_serial is not None else '-'}"
              + (f"  {m.error}" if m.error else ""))
    by = {m.name: m for m in results.modes}
    mg, fl = by.get("multi-gpu"), by.get("flower")
    if mg and fl and mg.ok and fl.ok:
        assert mg.median_round_s and fl.median_round_s
        print(f"multi-gpu / flower: round {mg.median_round_s / fl.median_round_s:.2f}x "
              f"(target <= 0.92), cold start {(mg.cold_start_s or 0) / (fl.cold_start_s or 1):.2f}x "
              f"(<= 0.5), PSS {mg.extra['pss_peak_bytes'] / max(fl.extra['pss_peak_bytes'], 1):.2f}x"
              " (<= 0.75)")
    return 0 if all(m.ok for m in results.modes) else 1


if __name__ == "__main__":
    sys.exit(main())
