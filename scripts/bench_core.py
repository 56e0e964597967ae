"""Benchmark of the core claims on CPU slots, all ratios from one run.

    python scripts/bench_core.py [--rounds 8] [--no-interleave] [--out results/bench-core.json]

Runs ``gpubench compare --devices cpu:2`` (default case, 10 clients, batch 128) and prints:
multi-gpu speedup over serial (expected >= 1.8x: two slots), threaded and multiprocess
speedups (expected <= 1.1x: they share slot 0), and the harness overhead: multi-gpu's round
time over the busiest device's summed client train time (expected <= 1.05).
Exit status 1 when an expectation does not hold.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from gpubench.machine.isolation import bound_openmp_wait  # noqa: E402

bound_openmp_wait()  # as the command line does, before anything loads torch

from gpubench.api import compare  # noqa: E402
from gpubench.config import RunConfig, TrainConfig  # noqa: E402
from gpubench.results import median, write_results  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--out", default="results/bench-core.json")
    ap.add_argument("--sample-interval", type=float, default=0.1)
    ap.add_argument("--no-interleave", action="store_true",
                    help="run the modes one after another (default: round by round, so that "
                    "the drift of a shared machine hits every mode alike)")
    args = ap.parse_args()
    config = RunConfig(
        case="cnn",
        clients=10,
        train=TrainConfig(batch_size=128),
        devices="cpu:2",
        rounds=args.rounds,
        interleave=not args.no_interleave,
        sample_interval_s=args.sample_interval or None,
    )
    results = compare(config, counterfactual=False)  # the monitor runs, as in compare
    write_results(results, args.out)
    modes = {m.name: m for m in results.modes}
    ok = True

    def check(label: str, value: float | None, good: bool) -> None:
        nonlocal ok
        ok = ok and good
        shown = "n/a" if value is None else f"{value:.3f}"
        print(f"{'PASS' if good else 'FAIL'}  {label}: {shown}")

    for name in ("serial", "threaded", "multiprocess", "multi-gpu"):
        m = modes[name]
        print(f"{name:13s} status={m.status} median round={m.median_round_s or float('nan'):.3f} s "
              f"speedup={m.speedup_vs_serial or float('nan'):.3f} "
              f"diff={m.max_abs_diff_vs_serial}")
    mg = modes["multi-gpu"]
    check("multi-gpu speedup >= 1.8", mg.speedup_vs_serial, (mg.speedup_vs_serial or 0) >= 1.8)
    for name in ("threaded", "multiprocess"):
        s = modes[name].speedup_vs_serial
        check(f"{name} speedup <= 1.1", s, s is not None and s <= 1.1)
    overheads = []
    for r in mg.rounds:
        if r.warmup:
            continue
        per_device: dict[str, float] = defaultdict(float)
        for c in r.clients:
            per_device[c.device] += c.train_s
        overheads.append(r.time_s / max(per_device.values()))
    overhead = median(overheads) if overheads else None
    check("multi-gpu round / busiest device's summed train time <= 1.05", overhead,
          overhead is not None and overhead <= 1.05)
    for m in results.modes:
        check(f"{m.name} same result as serial (max abs diff)", m.max_abs_diff_vs_serial,
              m.same_result is not False)
    print(f"results: {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
