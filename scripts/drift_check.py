"""A noisy machine must not fake a one-slot speedup: the acceptance check for drift.

    python scripts/drift_check.py [--busy-seconds 22] [--core 0] [--out results/drift.json]
                                  [-- MORE COMPARE OPTIONS]

Starts a busy loop pinned to one core (``os.sched_setaffinity``) for the first
``--busy-seconds`` of the run, runs

    gpubench compare --clients 10 --batch-size 128 --devices cpu:2
                     --modes serial,threaded,multiprocess --out OUT

(the modes interleaved, the default), stops the loop, and prints each mode's ratio over serial
and the run's findings. threaded and multiprocess share slot 0 with serial, so neither may
show more than 1.10x unless the run reports the machine's drift (``machine-drift``). Exit
status: 0 the rule holds, 1 it is broken, the compare's own status when it could not run
(2 bad input, 130 Ctrl-C). Run it on an otherwise quiet machine of at least two cores.
Ctrl-C stops the loop and the compare (which writes what it measured) and leaves no process.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

ONE_SLOT_MODES = ("threaded", "multiprocess")
LIMIT = 1.10
COMMAND = ["--clients", "10", "--batch-size", "128", "--devices", "cpu:2",
           "--modes", "serial,threaded,multiprocess"]

# The loop pins itself, spins until its deadline, and exits; the parent also kills it.
BUSY_LOOP = (
    "import os, sys, time\n"
    "os.sched_setaffinity(0, {int(sys.argv[1])})\n"
    "end = time.monotonic() + float(sys.argv[2])\n"
    "while time.monotonic() < end:\n"
    "    pass\n"
)


def start_busy_loop(core: int, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(core), str(seconds)])


def stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """Stop one process this script started and reap it."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def verdict(path: Path) -> int:
    """Print the ratios and findings of the results file; 1 when the rule is broken."""
    from gpubench.findings import compute_findings
    from gpubench.findings.base import speedup
    from gpubench.report.findings import format_findings
    from gpubench.results import read_results

    results = read_results(path)
    findings = compute_findings(results)
    drift = any(f.code == "machine-drift" for f in findings)
    broken = []
    print(f"schedule: {results.config.schedule} ({', '.join(results.config.schedule_blocks or ())})")
    for mode in results.modes:
        ratio = speedup(results, mode) if mode.ok else None
        shown = "-" if ratio is None else f"{ratio:.2f}x"
        print(f"{mode.name:14s} {mode.status:8s} {shown}")
        if mode.name in ONE_SLOT_MODES and ratio is not None and ratio > LIMIT and not drift:
            broken.append(f"{mode.name} {ratio:.2f}x on one slot without a machine-drift finding")
    print(format_findings(findings) or "no findings")
    for line in broken:
        print(f"BROKEN: {line}")
    print("rule holds" if not broken else "rule broken")
    return 1 if broken else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--busy-seconds", type=float, default=22.0)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--out", default="results/drift-check.json")
    ap.add_argument("extra", nargs=argparse.REMAINDER,
                    help="more options for gpubench compare, after --")
    args = ap.parse_args(argv)
    if args.core not in os.sched_getaffinity(0):
        print(f"drift_check: core {args.core} is not available to this process", file=sys.stderr)
        return 2
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    out = Path(args.out)
    command = [sys.executable, "-m", "gpubench", "compare", *COMMAND, "--out", str(out), *extra]
    loop = compare = None
    try:
        loop = start_busy_loop(args.core, args.busy_seconds)
        compare = subprocess.Popen(command)
        code = compare.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached the compare too (same process group): it stops its workers and
        # writes what it measured; wait for that, then stop the loop.
        if compare is not None:
            try:
                compare.wait(timeout=5)
            except subprocess.TimeoutExpired:  # not in our process group: pass it on
                stop(compare, signal.SIGINT)
        return 130
    finally:
        stop(loop)
        stop(compare)
    if code not in (0, 1) or not out.exists():
        print(f"drift_check: gpubench compare exited {code}", file=sys.stderr)
        return code or 2
    return verdict(out)


if __name__ == "__main__":
    sys.exit(main())
