#!/usr/bin/env python
"""Measure how often the gate's FAIL rule fires, on simulated round times.

Each trial draws four samples of rounds (baseline serial, baseline mode, current serial,
current mode) with multiplicative log-normal noise, computes the bootstrap interval of
``current speedup / baseline speedup`` exactly as ``gpubench gate`` does, and counts a FAIL
when the whole interval lies below ``1 - max_drop``. Rows:

- identical: nothing changed (every FAIL is a false alarm);
- at limit: the speedup really fell by exactly ``max_drop`` (FAILs here are still wrong,
  the worst case for false alarms);
- drop 25%: a real regression (every FAIL is a catch).

Usage: python scripts/gate_error_rates.py [--trials 2000] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np
from tabulate import tabulate

from gpubench.gate import DEFAULT_MAX_DROP
from gpubench.stats import DEFAULT_LEVEL, speedup_ratio_interval

SPEEDUP = 1.9  # a multi-device mode on two slots


def fail_rate(
    rng: np.random.Generator, trials: int, rounds: int, noise: float, ratio: float
) -> float:
    limit = 1 - DEFAULT_MAX_DROP
    fails = 0
    for _ in range(trials):
        base_serial, base_mode, cur_serial, cur_mode = (
            scale * np.exp(rng.normal(0.0, noise, rounds))
            for scale in (1.0, 1 / SPEEDUP, 1.0, 1 / (SPEEDUP * ratio))
        )
        fails += speedup_ratio_interval(cur_serial, cur_mode, base_serial, base_mode).below(limit)
    return fails / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    cases = [("identical", 1.0), ("at limit", 1 - DEFAULT_MAX_DROP), ("drop 25%", 0.75)]
    rows = []
    for rounds in (3, 5, 10, 20):
        for noise in (0.02, 0.05, 0.10):
            rates = [fail_rate(rng, args.trials, rounds, noise, ratio) for _, ratio in cases]
            rows.append([rounds, f"{noise:.0%}", *(f"{r:.2%}" for r in rates)])
    print(
        f"FAIL rate of the gate rule ({DEFAULT_LEVEL:.0%} bootstrap CI, --max-drop "
        f"{DEFAULT_MAX_DROP:.0%}, {args.trials} simulated run pairs per cell, seed {args.seed})"
    )
    print(tabulate(rows, headers=["rounds", "noise", *(f"FAIL: {n}" for n, _ in cases)]))


if __name__ == "__main__":
    main()
