#!/usr/bin/env python
"""Measure how often the gate's FAIL rule fires, on simulated round times.

Each trial simulates a baseline run and a current run of serial and one mode. Every round
time is ``scale * drift * noise``: ``noise`` is each mode's own log-normal noise, and
``drift`` is the machine's (another tenant on a shared VM, a GPU's clocks), drawn once per
round of the run. In an interleaved run (``--interleave``) serial's round *i* and the mode's
round *i* run back to back and share that round's drift; in a sequential run the modes run
at different times and each round has drift of its own. The gate's statistic is computed
exactly as ``gpubench gate`` does (``gpubench.stats.change_interval``: paired for an
interleaved run of at least ``MIN_PAIRS`` rounds; Student's t with 2-4 rounds, the percentile
bootstrap with more), and a trial FAILs when ``stats.decide`` says the interval of
``current speedup / baseline speedup`` lies wholly below ``1 - max_drop``. Columns:

- identical: nothing changed (every FAIL is a false alarm);
- at limit: the speedup really fell by exactly ``max_drop`` (FAILs here are still wrong,
  the worst case for false alarms);
- drop 25%: a real regression (every FAIL is a catch).

Usage: python scripts/gate_error_rates.py [--trials 1000] [--seed 0] [--markdown]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tabulate import tabulate

from gpubench.gate import DEFAULT_MAX_DROP
from gpubench.stats import BEYOND, DEFAULT_LEVEL, Rounds, change_interval, decide

SPEEDUP = 1.9  # a multi-device mode on two slots
# (interleaved, rounds, drift common to one round, noise of each mode's own)
ROWS = (
    (False, 3, 0.0, 0.02),
    (False, 3, 0.0, 0.05),
    (False, 4, 0.0, 0.05),
    (False, 5, 0.0, 0.05),
    (False, 10, 0.0, 0.05),
    (False, 10, 0.0, 0.10),
    (False, 20, 0.0, 0.10),
    (False, 10, 0.10, 0.03),
    (True, 10, 0.0, 0.05),
    (True, 3, 0.10, 0.03),
    (True, 4, 0.10, 0.03),
    (True, 5, 0.10, 0.03),
    (True, 10, 0.10, 0.03),
    (True, 10, 0.20, 0.05),
)
CASES = (("identical", 1.0), ("at limit", 1 - DEFAULT_MAX_DROP), ("drop 25%", 0.75))


def simulate_run(
    rng: np.random.Generator,
    interleaved: bool,
    rounds: int,
    drift: float,
    noise: float,
    speedup: float,
) -> Rounds:
    """One run's serial and mode rounds, as the gate sees them."""
    serial_drift = np.exp(rng.normal(0.0, drift, rounds))
    mode_drift = serial_drift if interleaved else np.exp(rng.normal(0.0, drift, rounds))
    serial = serial_drift * np.exp(rng.normal(0.0, noise, rounds))
    mode = mode_drift * np.exp(rng.normal(0.0, noise, rounds)) / speedup
    return Rounds.interleaved(serial, mode) if interleaved else Rounds.of(serial, mode)


def fail_rate(
    rng: np.random.Generator,
    trials: int,
    row: tuple[bool, int, float, float],
    ratio: float,
) -> float:
    limit = 1 - DEFAULT_MAX_DROP
    fails = 0
    for _ in range(trials):
        base = simulate_run(rng, *row, SPEEDUP)
        cur = simulate_run(rng, *row, SPEEDUP * ratio)
        fails += decide(change_interval(cur, base), limit) == BEYOND
    return fails / trials


def parse_options(doc: str | None) -> tuple[argparse.Namespace, np.random.Generator]:
    """``--trials``, ``--seed`` and ``--markdown`` (this script's and history_error_rates'),
    and the generator seeded from them."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true", help="print a GitHub table")
    args = parser.parse_args()
    return args, np.random.default_rng(args.seed)


def main() -> None:
    args, rng = parse_options(__doc__)
    started = time.perf_counter()
    rows = []
    for row in ROWS:
        interleaved, rounds, drift, noise = row
        rates = [fail_rate(rng, args.trials, row, ratio) for _, ratio in CASES]
        rows.append(
            [
                "interleaved" if interleaved else "sequential",
                rounds,
                f"{drift:.0%}",
                f"{noise:.0%}",
                *(f"{r:.1%}" for r in rates),
            ]
        )
    print(
        f"FAIL rate of the gate rule ({DEFAULT_LEVEL:.0%} CI, --max-drop "
        f"{DEFAULT_MAX_DROP:.0%}, true speedup {SPEEDUP}x, {args.trials} simulated run pairs "
        f"per cell, seed {args.seed}; {time.perf_counter() - started:.0f} s)"
    )
    headers = ["run", "rounds", "common drift", "own noise", *(f"FAIL: {n}" for n, _ in CASES)]
    print(tabulate(rows, headers=headers, tablefmt="github" if args.markdown else "simple"))


if __name__ == "__main__":
    main()
