"""Speedups, their bootstrap confidence intervals, and the one rule that reads an interval.

Standard library and numpy only (never torch): the gate, the reports and the findings compute
everything from saved JSON on machines without a GPU, and they all ask this module, so they
cannot disagree on the same results:

- :func:`speedup` is *the* speedup of a candidate over a reference (a mode over serial);
- :func:`compare_speed` answers "is the candidate faster / slower than a limit, and with what
  interval" (:func:`speedup_interval` and :func:`decide` are its two halves);
- :func:`change_interval` is the interval of ``current speedup / baseline speedup``;
- :func:`rounds_vs_serial` decides what a mode's speedup is computed from, paired or not.

**Unpaired** (modes ran one after another): ``speedup = median(reference) / median(candidate)``.
Each sample of rounds is resampled with replacement on its own (the rounds of one mode are
exchangeable; different modes ran at different times).

**Paired** (an ``--interleave`` run: candidate round *i* ran right after reference round *i*):
``speedup = median(reference[i] / candidate[i])``, and the bootstrap resamples *pairs*. Drift
that hits both rounds of a pair alike (another tenant on a shared VM, a GPU's clocks) cancels
in each ratio instead of widening the interval: with 10% drift common to a round and 3% noise
of each mode's own, 10 interleaved rounds catch a 25% drop in practically every run where the
unpaired statistic catches about a third (``scripts/gate_error_rates.py``).

Why these choices:

- *Medians*, not means: one slow round (a page-in, another tenant, a garbage collection)
  moves a mean a lot and a median hardly at all.
- *Percentile bootstrap*: it needs no assumption about the shape of the round-time
  distribution (skewed, with a long tail), it is invariant under the log transform that
  makes ratios symmetric, and it is cheap (a few thousand medians of a handful of values).
- *Level 99%* (``DEFAULT_LEVEL``): a limit is crossed only when the *whole* interval lies
  beyond it, a one-sided test at ``(1 - level) / 2`` = 0.5% nominal error even when the true
  speedup sits exactly on the limit. Bootstrap intervals of medians of few rounds are
  somewhat too narrow, and 99% keeps the false-FAIL rate under 1% despite that.
- *Seeded* generator (``DEFAULT_SEED``): the same files always give the same verdict.

With fewer than ``MIN_ROUNDS`` (5) rounds in any sample the data cannot give a 99% interval:
the interval comes back flagged ``estimated=False`` (a lone point with one round, the whole
range of the bootstrap's draws with 2 to 4), and :func:`decide` never lets it cross a limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gpubench.results import ModeResult, Results, median

__all__ = [
    "BEYOND",
    "DEFAULT_LEVEL",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "MIN_PAIRS",
    "MIN_ROUNDS",
    "NOISY_SPREAD",
    "REFERENCE_MODE",
    "UNDECIDED",
    "WITHIN",
    "Interval",
    "Rounds",
    "SpeedCheck",
    "Summary",
    "bootstrap_ratio",
    "change_interval",
    "compare_speed",
    "decide",
    "iqr",
    "median",
    "paired_rounds",
    "rounds_vs_serial",
    "speedup",
    "speedup_interval",
    "spread",
    "summarize",
]

DEFAULT_LEVEL = 0.99
DEFAULT_RESAMPLES = 4000
DEFAULT_SEED = 20240601
# IQR/median above which a sample of rounds counts as noisy (torch.utils.benchmark warns at 10%).
NOISY_SPREAD = 0.10
REFERENCE_MODE = "serial"
# Fewest pairs the paired bootstrap is trusted with: with fewer, the resampled median often
# lands on the smallest or largest pair, the 99% interval is too narrow, and a speedup that
# fell exactly --max-drop FAILs in 2% (4 pairs) to 7% (3 pairs) of runs. Fewer pairs fall
# back to the unpaired statistic, which counts common drift as noise and so errs wide.
MIN_PAIRS = 6
# Fewest rounds per sample for a 99% interval. A percentile bootstrap cannot reach beyond the
# values it resamples, and with 3 rounds per mode even the whole range of its draws FAILs a
# speedup that fell exactly --max-drop in about 1.1% of runs (4 rounds: 0.7%, 5: 0.1%). With
# fewer rounds the interval is that whole range, flagged not estimated: it can show a speedup
# well inside a limit, never one beyond it.
MIN_ROUNDS = 5

# What an interval says about limits (see decide).
WITHIN = "within"  # the interval is on the allowed side of every limit
BEYOND = "beyond"  # the whole interval lies beyond a limit
UNDECIDED = "undecided"  # the interval straddles a limit (or a lone point lies outside)


def iqr(values: Sequence[float]) -> float:
    """Interquartile range (linear interpolation between order statistics)."""
    if len(values) == 0:
        raise ValueError("IQR of no values")
    q1, q3 = np.percentile(np.asarray(values, dtype=float), [25, 75])
    return float(q3 - q1)


def spread(values: Sequence[float]) -> float:
    """Relative spread: IQR / median (0 for a single value)."""
    m = median(values)
    return iqr(values) / m if m else math.inf


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    iqr: float
    spread: float

    @property
    def noisy(self) -> bool:
        return self.spread > NOISY_SPREAD


def summarize(values: Sequence[float]) -> Summary:
    return Summary(len(values), median(values), iqr(values), spread(values))


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval ``[low, high]`` at ``level``.

    ``estimated`` is False when the data could not give an interval (fewer than two rounds
    in some sample): then ``low == high == estimate`` and the interval says nothing about noise.
    """

    estimate: float
    low: float
    high: float
    level: float
    estimated: bool = True

    def below(self, limit: float) -> bool:
        """The whole interval lies below ``limit``."""
        return self.high < limit

    def above(self, limit: float) -> bool:
        """The whole interval lies above ``limit``."""
        return self.low > limit

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def format(self, digits: int = 2, unit: str = "") -> str:
        if not self.estimated:
            return f"{self.estimate:.{digits}f}{unit}"
        return f"{self.estimate:.{digits}f}{unit} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _clean(name: str, values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name}: need at least one round time")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"{name}: round times must be finite and > 0")
    return a


def _check_level(level: float, resamples: int) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if resamples < 100:
        raise ValueError(f"resamples must be >= 100, got {resamples}")


def _resampled_medians(a: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    # Sorting the small integer indices of each resample, over sorted values, gives the
    # resample's order statistics: about 5x faster than np.median on the gathered values.
    ordered = np.sort(a)
    idx = rng.integers(0, a.size, size=(resamples, a.size))
    idx.sort(axis=1)
    lo, hi = (a.size - 1) // 2, a.size // 2
    return (ordered[idx[:, lo]] + ordered[idx[:, hi]]) / 2


def _percentile_interval(
    estimate: float, draws: np.ndarray, level: float, smallest: int
) -> Interval:
    """The central ``level`` share of bootstrap draws of a log ratio, around ``estimate``.

    ``smallest``: rounds in the smallest sample. Under ``MIN_ROUNDS``, the whole range of
    the draws, flagged not estimated.
    """
    if smallest < MIN_ROUNDS:
        low, high = float(np.exp(draws.min())), float(np.exp(draws.max()))
    else:
        tail = (1 - level) / 2 * 100
        low, high = (float(v) for v in np.exp(np.percentile(draws, [tail, 100 - tail])))
    # The percentile interval of a discrete bootstrap can miss the point estimate by a hair.
    low, high = min(low, estimate), max(high, estimate)
    return Interval(estimate, low, high, level, estimated=smallest >= MIN_ROUNDS)


def bootstrap_ratio(
    numerators: Sequence[Sequence[float]],
    denominators: Sequence[Sequence[float]],
    *,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """CI of ``prod(median(n) for n in numerators) / prod(median(d) for d in denominators)``.

    Each sample is resampled independently (unpaired). Speedups go through :func:`speedup`
    and :func:`speedup_interval`; this general form serves other ratios of medians.
    """
    _check_level(level, resamples)
    nums = [_clean("numerator", v) for v in numerators]
    dens = [_clean("denominator", v) for v in denominators]
    # Sum of logs: keeps the product of several medians well scaled.
    estimate = math.exp(
        sum(math.log(float(np.median(a))) for a in nums)
        - sum(math.log(float(np.median(a))) for a in dens)
    )
    if min(a.size for a in nums + dens) < 2:
        return Interval(estimate, estimate, estimate, level, estimated=False)
    rng = np.random.default_rng(seed)
    log_ratio = np.zeros(resamples)
    for a in nums:
        log_ratio += np.log(_resampled_medians(a, resamples, rng))
    for a in dens:
        log_ratio -= np.log(_resampled_medians(a, resamples, rng))
    return _percentile_interval(estimate, log_ratio, level, min(a.size for a in nums + dens))


# --- speedups -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rounds:
    """What one speedup is computed from: the reference's and the candidate's round times.

    ``paired``: ``candidate[i]`` and ``reference[i]`` ran in the same interleaved round, so
    the speedup is the median of the per-pair ratios and the bootstrap resamples pairs.
    """

    reference: tuple[float, ...]
    candidate: tuple[float, ...]
    paired: bool = False

    def __post_init__(self) -> None:
        _clean("reference", self.reference)
        _clean("candidate", self.candidate)
        if self.paired and len(self.reference) != len(self.candidate):
            raise ValueError(
                f"paired rounds need as many reference rounds as candidate rounds "
                f"({len(self.reference)} vs {len(self.candidate)})"
            )

    @classmethod
    def of(
        cls, reference: Sequence[float], candidate: Sequence[float], paired: bool = False
    ) -> Rounds:
        return cls(tuple(map(float, reference)), tuple(map(float, candidate)), paired)

    @classmethod
    def interleaved(cls, reference: Sequence[float], candidate: Sequence[float]) -> Rounds:
        """Rounds of one interleaved run: paired with at least ``MIN_PAIRS`` pairs."""
        paired = len(reference) == len(candidate) >= MIN_PAIRS
        return cls.of(reference, candidate, paired=paired)

    @property
    def size(self) -> int:
        """Rounds (pairs, when paired) in the smaller sample: under 2, no interval."""
        return min(len(self.reference), len(self.candidate))

    def log_ratios(self) -> np.ndarray:
        """``log(reference[i] / candidate[i])`` of each pair (paired rounds only)."""
        return np.log(np.asarray(self.reference)) - np.log(np.asarray(self.candidate))

    def log_speedup(self) -> float:
        if self.paired:
            return float(np.median(self.log_ratios()))
        return math.log(median(self.reference)) - math.log(median(self.candidate))

    def log_speedup_draws(self, resamples: int, rng: np.random.Generator) -> np.ndarray:
        """Bootstrap draws of the log speedup: pairs resampled together, or each sample alone."""
        if self.paired:
            return _resampled_medians(self.log_ratios(), resamples, rng)
        ref = _resampled_medians(np.asarray(self.reference), resamples, rng)
        cand = _resampled_medians(np.asarray(self.candidate), resamples, rng)
        return np.asarray(np.log(ref) - np.log(cand))


def speedup(rounds: Rounds) -> float:
    """How many times faster the candidate ran than the reference (the one definition)."""
    return math.exp(rounds.log_speedup())


def speedup_interval(
    rounds: Rounds,
    *,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """:func:`speedup` with its percentile-bootstrap interval at ``level``."""
    _check_level(level, resamples)
    estimate = speedup(rounds)
    if rounds.size < 2:
        return Interval(estimate, estimate, estimate, level, estimated=False)
    draws = rounds.log_speedup_draws(resamples, np.random.default_rng(seed))
    return _percentile_interval(estimate, draws, level, rounds.size)


def change_interval(
    current: Rounds,
    baseline: Rounds,
    *,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """Interval of ``speedup(current) / speedup(baseline)``: below 1, the candidate got slower.

    The two runs are independent, so their draws are too; each run is resampled the way its
    own speedup is (pairs of an interleaved run, samples of a sequential one).
    """
    _check_level(level, resamples)
    estimate = math.exp(current.log_speedup() - baseline.log_speedup())
    if min(current.size, baseline.size) < 2:
        return Interval(estimate, estimate, estimate, level, estimated=False)
    rng = np.random.default_rng(seed)
    draws = current.log_speedup_draws(resamples, rng) - baseline.log_speedup_draws(resamples, rng)
    return _percentile_interval(estimate, draws, level, min(current.size, baseline.size))


def decide(interval: Interval, low: float | None = None, high: float | None = None) -> str:
    """What an interval says about the limits ``low`` and/or ``high`` on its value.

    BEYOND when the *whole* interval lies below ``low`` or above ``high``; WITHIN when it
    lies entirely inside the limits; UNDECIDED when it straddles one. An interval that is
    not ``estimated`` (fewer than ``MIN_ROUNDS`` rounds) is never BEYOND: WITHIN when its
    whole range is inside the limits, else UNDECIDED.
    """
    inside = (low is None or interval.low >= low) and (high is None or interval.high <= high)
    if inside:
        return WITHIN
    if not interval.estimated:
        return UNDECIDED
    if (low is not None and interval.below(low)) or (high is not None and interval.above(high)):
        return BEYOND
    return UNDECIDED


@dataclass(frozen=True)
class SpeedCheck:
    """The answer of :func:`compare_speed`: the speedup's interval and what it says."""

    interval: Interval
    outcome: str  # WITHIN, BEYOND or UNDECIDED
    paired: bool

    @property
    def holds(self) -> bool:
        """The evidence shows the speedup inside the limits."""
        return self.outcome == WITHIN


def compare_speed(
    rounds: Rounds,
    *,
    at_least: float | None = None,
    at_most: float | None = None,
    level: float = DEFAULT_LEVEL,
) -> SpeedCheck:
    """Is the candidate at least ``at_least`` / at most ``at_most`` times as fast, with what interval.

    ``compare_speed(r, at_least=1.05).holds``: clearly faster than the reference;
    ``compare_speed(r, at_most=0.95).holds``: clearly slower. The gate's expectations,
    the report's marks and the findings all ask this.
    """
    interval = speedup_interval(rounds, level=level)
    return SpeedCheck(interval, decide(interval, at_least, at_most), rounds.paired)


# --- from a results file ------------------------------------------------------------------


def _measured_by_index(mode: ModeResult) -> dict[int, float] | None:
    """Measured round index -> time, when the mode's round records match its round times."""
    records = [r for r in mode.rounds if not r.warmup]
    if not records or tuple(r.time_s for r in records) != tuple(mode.round_times_s):
        return None
    by_index = {r.index: r.time_s for r in records}
    return by_index if len(by_index) == len(records) else None


def paired_rounds(reference: ModeResult, candidate: ModeResult) -> Rounds | None:
    """The two modes' rounds as pairs of one interleaved run: same round index, or position.

    None when they cannot be matched; unpaired when fewer than ``MIN_PAIRS`` match.
    """
    ref, cand = _measured_by_index(reference), _measured_by_index(candidate)
    if ref is not None and cand is not None:
        common = sorted(set(ref) & set(cand))
        if not common:
            return None
        return Rounds.interleaved([ref[i] for i in common], [cand[i] for i in common])
    if len(reference.round_times_s) == len(candidate.round_times_s):
        return Rounds.interleaved(reference.round_times_s, candidate.round_times_s)
    return None


def rounds_vs_serial(results: Results, mode: ModeResult) -> Rounds | None:
    """What ``mode``'s speedup over serial in ``results`` is computed from, or None.

    None when either did not run or kept no measured rounds. Paired when the run was
    interleaved (``config["interleave"]``) and the rounds can be matched.
    """
    serial = results.mode(REFERENCE_MODE)
    if serial is None or not serial.ok or not mode.ok:
        return None
    if not serial.round_times_s or not mode.round_times_s:
        return None
    if results.config.get("interleave") is True:
        pairs = paired_rounds(serial, mode)
        if pairs is not None:
            return pairs
    return Rounds.of(serial.round_times_s, mode.round_times_s)
