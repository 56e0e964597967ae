#!/usr/bin/env python
"""Measure how often ``gpubench history check`` raises a false alarm, and how often it finds a
real step, on simulated series.

Each series is ``points`` runs of ``gpubench compare --rounds 3`` (sequential): every run's
speedup is computed from 3 serial and 3 mode rounds with log-normal round noise of the given
size (``gate_error_rates.simulate_run``, as the gate's own table), true speedup 1.9x, and
from the middle run on the speedup is ``1 - step`` times as large. The detection is
``gpubench.history.change_points`` on the log speedups, as ``history check`` runs it.
Columns:

- change point: the check found one (with no step, a false alarm; with a step, only one
  at the step's run or next to it counts);
- exit 1: the latest change point is a drop beyond ``--max-drop`` (5% and 10%).

Usage: python scripts/history_error_rates.py [--trials 1000] [--seed 0] [--markdown]
"""

from __future__ import annotations

import math
import time

import numpy as np
from gate_error_rates import SPEEDUP, parse_options, simulate_run
from tabulate import tabulate

from gpubench.history import change_points
from gpubench.stats import speedup

ROUNDS = 3
ROWS = [(noise, points) for noise in (0.02, 0.05) for points in (10, 30)]
STEPS = (0.0, 0.10, 0.25)
MAX_DROPS = (0.05, 0.10)


def simulate_series(
    rng: np.random.Generator, points: int, noise: float, step: float
) -> list[float]:
    """Log speedups of ``points`` runs; from run ``points // 2`` on, ``1 - step`` as fast."""
    logs = []
    for i in range(points):
        truth = SPEEDUP * (1 - step if i >= points // 2 else 1.0)
        logs.append(math.log(speedup(simulate_run(rng, False, ROUNDS, 0.0, noise, truth))))
    return logs


def rates(
    rng: np.random.Generator, trials: int, points: int, noise: float, step: float
) -> list[float]:
    """[change point (at the step when there is one), exit 1 at each of MAX_DROPS]."""
    found = 0
    exits = [0] * len(MAX_DROPS)
    for _ in range(trials):
        splits = change_points(simulate_series(rng, points, noise, step))
        if step == 0:
            found += bool(splits)
        else:
            found += any(abs(s.index - points // 2) <= 1 for s in splits)
        for i, drop in enumerate(MAX_DROPS):
            exits[i] += bool(splits) and splits[-1].ratio < 1 - drop
    return [found / trials, *(e / trials for e in exits)]


def main() -> None:
    args, rng = parse_options(__doc__)
    started = time.perf_counter()
    rows = []
    for noise, points in ROWS:
        for step in STEPS:
            found, *exits = rates(rng, args.trials, points, noise, step)
            rows.append([f"{noise:.0%}", points, f"{step:.0%}" if step else "none",
                         f"{found:.1%}", *(f"{e:.1%}" for e in exits)])
    print(f"history check on simulated series ({ROUNDS} rounds per run, true speedup "
          f"{SPEEDUP}x, step at the middle run, {args.trials} series per row, seed "
          f"{args.seed}; {time.perf_counter() - started:.0f} s)")
    headers = ["round noise", "runs", "step", "change point",
               *(f"exit 1 (--max-drop {d:.0%})" for d in MAX_DROPS)]
    print(tabulate(rows, headers=headers, tablefmt="github" if args.markdown else "simple"))


if __name__ == "__main__":
    main()
