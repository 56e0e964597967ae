"""Speedups, their confidence intervals, and the one rule that reads an interval.

Standard library and numpy only (never torch): the gate, the reports and the findings compute
everything from saved JSON on machines without a GPU, and they all ask this module, so they
cannot disagree on the same results:

- :func:`speedup` is *the* speedup of a candidate over a reference (a mode over serial);
- :func:`compare_speed` answers "is the candidate faster / slower than a limit, and with what
  interval" (:func:`speedup_interval` and :func:`decide` are its two halves);
- :func:`change_interval` is the interval of ``current speedup / baseline speedup``;
- :class:`Speed` is a mode's speed against serial, the one measure every reader shows and
  judges (``Results.speed(name)`` builds it; ``gpubench.results.rounds_vs_serial`` decides
  what it is computed from, paired or not), with the one pair of limits ``FASTER`` and
  ``SLOWER``.

Pure arithmetic on round times: this module sits below :mod:`gpubench.results` in the layers,
so the data model can answer a speed with it.

**Unpaired** (modes ran one after another): ``speedup = median(reference) / median(candidate)``.
The rounds of one mode are exchangeable; different modes ran at different times.

**Paired** (an ``--interleave`` run: candidate round *i* ran right after reference round *i*):
``speedup = median(reference[i] / candidate[i])``. Drift that hits both rounds of a pair alike
(another tenant on a shared VM, a GPU's clocks) cancels in each ratio instead of widening the
interval. An interleaved run is paired from ``MIN_PAIRS`` (6) matched rounds; with fewer it
is read as unpaired (below), so its speedup is the ratio of medians.

**Which interval, by rounds per sample** (pairs, when paired; the smallest sample decides):

=====================  ==========================================================
1 round                no interval: the estimate alone, ``estimated=False``; it never
                       crosses a limit (:func:`decide`)
2-4 rounds             Student's t on the log round times (below)
5 rounds or more       percentile bootstrap of the medians
(6 pairs or more)      (pairs resampled together)
=====================  ==========================================================

*Student's t on logs* (``MIN_ROUNDS``, ``MIN_PAIRS``). A log speedup is a sum of independent
samples' mean logs: unpaired, ``mean(log reference) - mean(log candidate)`` (Welch's t: each
sample keeps its own variance); paired (2-5 pairs, given explicitly as
``Rounds(..., paired=True)``), the mean of the per-pair log ratios (a paired t on ``n``
ratios, ``n - 1`` degrees of freedom). A change between two runs adds the baseline's terms
with the opposite sign. The variances add, and the degrees of freedom are
Welch-Satterthwaite's, so the sample with the least data and the most noise sets them: the
99% quantile is 63.7 at one degree of freedom, 9.9 at 2, 4.6 at 4, so 2 or 3 rounds give a
wide interval, never a falsely narrow one. It is exact when log round times are normal
(multiplicative noise), and holds the nominal error closely when they are roughly so. The
interval is centred on the mean of the logs (the theory is for means) and stretched, where
needed, to contain :func:`speedup`, the number every page shows. Why not the bootstrap here:
a percentile bootstrap cannot reach beyond the values it resamples, so with 3 rounds its
99% interval is far too narrow (a speedup that fell exactly ``--max-drop`` FAILed in about
1.1% of runs even with the whole range of its draws), and the paired bootstrap of 3-5 pairs
lands on the smallest or largest pair (2-7% false FAILs).

Why 3 interleaved rounds are not paired: a paired t on 3 log ratios is exact, but it has 2
degrees of freedom where Welch's t on the two samples has up to 4 (99% quantiles 9.9 and
4.6), and pairing repays that only when drift common to a round is large next to each mode's
own noise. On this project's committed interleaved CPU-slot runs, cut into windows of 3 and
4 rounds, the unpaired interval was the narrower for most modes; with 10% common drift in
simulation the paired one is (``scripts/gate_error_rates.py``). Read unpaired, drift common
to a round errs wide (both rounds of a pair move together, and the separate variances count
that as noise), and the speedup of a short run stays what it always was.

*Percentile bootstrap* from 5 rounds (6 pairs): medians recomputed for every resample (pairs
resampled together when paired), the central ``level`` share of the log ratios kept. It
needs no assumption about the shape of the round-time distribution (skewed, with a long
tail), medians shrug off one slow round (a page-in, a garbage collection), and it is cheap.

Common to both:

- *Level 99%* (``DEFAULT_LEVEL``): a limit is crossed only when the *whole* interval lies
  beyond it, a one-sided test at ``(1 - level) / 2`` = 0.5% nominal error even when the true
  value sits exactly on the limit; ``scripts/gate_error_rates.py`` measures the gate's
  false-FAIL rate at the limit at or under 1% in every row, 3 to 20 rounds.
- *Symmetric*: swapping reference and candidate turns ``[low, high]`` into
  ``[1 / high, 1 / low]`` (exactly for the t interval).
- *Seeded* bootstrap (``DEFAULT_SEED``): the same files always give the same verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BEYOND",
    "DEFAULT_LEVEL",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "FASTER",
    "MIN_PAIRS",
    "MIN_ROUNDS",
    "NOISY_SPREAD",
    "REFERENCE_MODE",
    "SLOWER",
    "UNDECIDED",
    "WITHIN",
    "Interval",
    "Rounds",
    "Speed",
    "SpeedCheck",
    "Summary",
    "bootstrap_ratio",
    "change_interval",
    "compare_speed",
    "decide",
    "iqr",
    "median",
    "speedup",
    "speedup_interval",
    "spread",
    "t_quantile",
    "welch_p_value",
    "summarize",
]

DEFAULT_LEVEL = 0.99
DEFAULT_RESAMPLES = 4000
DEFAULT_SEED = 20240601
# IQR/median above which a sample of rounds counts as noisy (torch.utils.benchmark warns at 10%).
NOISY_SPREAD = 0.10
REFERENCE_MODE = "serial"
# The one speed verdict against serial, for every reader (tables, plots, pages, findings, the
# FAQ, the counterfactual runs): *faster* when the whole interval of a speedup lies above
# FASTER (the gate's ``min_speedup = 1.05`` PASSes exactly then), *slower* when it lies wholly
# below SLOWER (beyond round-to-round noise), no clear difference otherwise.
FASTER = 1.05
SLOWER = 0.95
# Fewest matched rounds for an interleaved run to be paired, and for the paired bootstrap.
# With fewer, the bootstrap's resampled median often lands on the smallest or largest pair and
# the 99% interval is too narrow (a speedup that fell exactly --max-drop FAILed in 2% of runs
# with 4 pairs, 7% with 3). A paired t on 2-5 pairs would be honest, but with its n - 1
# degrees of freedom it is mostly wider than Welch's t on the same rounds read unpaired (see
# the module docstring), so shorter interleaved runs are read unpaired; 2-5 pairs given
# explicitly as paired get the paired t.
MIN_PAIRS = 6
# Fewest rounds per sample for the unpaired bootstrap: a percentile bootstrap cannot reach
# beyond the values it resamples, and with 3 rounds per mode even the whole range of its draws
# FAILed a speedup that fell exactly --max-drop in about 1.1% of runs (4 rounds: 0.7%). 2 to 4
# rounds get Welch's t interval on the log round times instead; 1 round gets none.
MIN_ROUNDS = 5

# What an interval says about limits (see decide).
WITHIN = "within"  # the interval is on the allowed side of every limit
BEYOND = "beyond"  # the whole interval lies beyond a limit
UNDECIDED = "undecided"  # the interval straddles a limit (or a lone point lies outside)


def median(values: Sequence[float]) -> float:
    """The median of round times (the mean of the two middle values of an even count)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median of no values")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


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


def _percentile_interval(estimate: float, draws: np.ndarray, level: float) -> Interval:
    """The central ``level`` share of bootstrap draws of a log ratio, around ``estimate``."""
    tail = (1 - level) / 2 * 100
    low, high = (float(v) for v in np.exp(np.percentile(draws, [tail, 100 - tail])))
    # The percentile interval of a discrete bootstrap can miss the point estimate by a hair.
    return Interval(estimate, min(low, estimate), max(high, estimate), level)


# --- Student's t, for 2 to 4 rounds (2 to 5 pairs) -------------------------------------------


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return h


def _beta_regularised(a: float, b: float, x: float) -> float:
    """``I_x(a, b)``, the regularised incomplete beta function, for ``0 <= x <= 1``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
        + a * math.log(x) + b * math.log1p(-x)
    )  # fmt: skip
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def _t_tail(t: float, df: float) -> float:
    """``P(T > t)`` for Student's t with ``df`` (real, > 0) degrees of freedom, ``t >= 0``."""
    return 0.5 * _beta_regularised(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(p: float, df: float) -> float:
    """The ``p``-quantile of Student's t with ``df`` degrees of freedom (``0.5 <= p < 1``).

    ``df`` may be fractional (Welch-Satterthwaite's). Bisection on the exact tail: 64 halvings
    of a bracket that holds the quantile, precise to the last few digits.
    """
    if not 0.5 <= p < 1 or not df > 0:
        raise ValueError(f"t quantile needs 0.5 <= p < 1 and df > 0, got p={p}, df={df}")
    tail = 1.0 - p
    low, high = 0.0, 2.0
    while _t_tail(high, df) > tail:
        low, high = high, high * 2.0
    for _ in range(64):
        mid = (low + high) / 2.0
        if _t_tail(mid, df) > tail:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


def welch_p_value(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test that samples ``a`` and ``b`` share their mean.

    Each sample needs two values or more. When both have no spread at all, 0 if the means
    differ and 1 if they are equal (the test is then a comparison of two constants).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2:
        raise ValueError("Welch's t-test needs two values or more in each sample")
    va, vb = float(x.var(ddof=1)) / x.size, float(y.var(ddof=1)) / y.size
    gap = abs(float(x.mean()) - float(y.mean()))
    if va + vb == 0:
        return 0.0 if gap > 0 else 1.0
    df = (va + vb) ** 2 / sum(v**2 / (n - 1) for v, n in ((va, x.size), (vb, y.size)) if v > 0)
    return min(1.0, 2.0 * _t_tail(gap / math.sqrt(va + vb), df))


# (signed mean, variance of that mean, degrees of freedom) of one independent sample of logs
Term = tuple[float, float, int]


def _log_term(logs: np.ndarray, sign: float = 1.0) -> Term:
    return sign * float(logs.mean()), float(logs.var(ddof=1)) / logs.size, logs.size - 1


def _student_interval(estimate: float, terms: Sequence[Term], level: float) -> Interval:
    """Student's t interval of ``exp(sum of the terms' means)``, stretched to hold ``estimate``.

    The variances of the means add; the degrees of freedom are Welch-Satterthwaite's,
    ``(sum v)^2 / sum(v^2 / df)``, which lie between the smallest term's and their sum.
    """
    centre = sum(mean for mean, _, _ in terms)
    variance = sum(v for _, v, _ in terms)
    half = 0.0
    if variance > 0:
        df = variance**2 / sum(v**2 / dof for _, v, dof in terms if v > 0)
        half = t_quantile((1 + level) / 2, df) * math.sqrt(variance)
    low, high = math.exp(centre - half), math.exp(centre + half)
    return Interval(estimate, min(low, estimate), max(high, estimate), level)


def bootstrap_ratio(
    numerators: Sequence[Sequence[float]],
    denominators: Sequence[Sequence[float]],
    *,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """CI of ``prod(median(n) for n in numerators) / prod(median(d) for d in denominators)``.

    Each sample is independent (unpaired). The interval follows the module's rule by the
    smallest sample: none with 1 value, Student's t on the logs (Welch-Satterthwaite) with
    2 to 4, the percentile bootstrap with ``MIN_ROUNDS`` or more. Speedups go through
    :func:`speedup` and :func:`speedup_interval`; this general form serves other ratios.
    """
    _check_level(level, resamples)
    nums = [_clean("numerator", v) for v in numerators]
    dens = [_clean("denominator", v) for v in denominators]
    # Sum of logs: keeps the product of several medians well scaled.
    estimate = math.exp(
        sum(math.log(float(np.median(a))) for a in nums)
        - sum(math.log(float(np.median(a))) for a in dens)
    )
    smallest = min(a.size for a in nums + dens)
    if smallest < 2:
        return Interval(estimate, estimate, estimate, level, estimated=False)
    if smallest < MIN_ROUNDS:
        terms = [_log_term(np.log(a)) for a in nums] + [_log_term(np.log(a), -1.0) for a in dens]
        return _student_interval(estimate, terms, level)
    rng = np.random.default_rng(seed)
    log_ratio = np.zeros(resamples)
    for a in nums:
        log_ratio += np.log(_resampled_medians(a, resamples, rng))
    for a in dens:
        log_ratio -= np.log(_resampled_medians(a, resamples, rng))
    return _percentile_interval(estimate, log_ratio, level)


# --- speedups -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rounds:
    """What one speedup is computed from: the reference's and the candidate's round times.

    ``paired``: ``candidate[i]`` and ``reference[i]`` ran in the same interleaved round, so
    the speedup is the median of the per-pair ratios and the interval is computed from the
    pairs (the paired t, or the bootstrap resampling pairs).
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

    @property
    def few(self) -> bool:
        """Too few rounds for the bootstrap: the interval is Student's t (module docstring)."""
        return self.size < (MIN_PAIRS if self.paired else MIN_ROUNDS)

    def log_ratios(self) -> np.ndarray:
        """``log(reference[i] / candidate[i])`` of each pair (paired rounds only)."""
        return np.log(np.asarray(self.reference)) - np.log(np.asarray(self.candidate))

    def log_speedup(self) -> float:
        if self.paired:
            return float(np.median(self.log_ratios()))
        return math.log(median(self.reference)) - math.log(median(self.candidate))

    def log_terms(self, sign: float = 1.0) -> list[Term]:
        """The independent samples of logs whose means' sum estimates ``sign`` x the log
        speedup, for Student's t: the pairs' log ratios (a paired t), or the log reference
        times and, negated, the log candidate times (Welch's t)."""
        if self.paired:
            return [_log_term(self.log_ratios(), sign)]
        reference, candidate = np.asarray(self.reference), np.asarray(self.candidate)
        return [_log_term(np.log(reference), sign), _log_term(np.log(candidate), -sign)]

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
    """:func:`speedup` with its interval at ``level``: none with one round, Student's t with
    too few for the bootstrap (``Rounds.few``), else the percentile bootstrap."""
    _check_level(level, resamples)
    estimate = speedup(rounds)
    if rounds.size < 2:
        return Interval(estimate, estimate, estimate, level, estimated=False)
    if rounds.few:
        return _student_interval(estimate, rounds.log_terms(), level)
    draws = rounds.log_speedup_draws(resamples, np.random.default_rng(seed))
    return _percentile_interval(estimate, draws, level)


def change_interval(
    current: Rounds,
    baseline: Rounds,
    *,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """Interval of ``speedup(current) / speedup(baseline)``: below 1, the candidate got slower.

    The two runs are independent. When either has too few rounds for the bootstrap, Student's
    t on all their terms (the current's, and the baseline's negated); else the bootstrap, each
    run resampled the way its own speedup is (pairs of an interleaved run, samples of a
    sequential one).
    """
    _check_level(level, resamples)
    estimate = math.exp(current.log_speedup() - baseline.log_speedup())
    if min(current.size, baseline.size) < 2:
        return Interval(estimate, estimate, estimate, level, estimated=False)
    if current.few or baseline.few:
        terms = current.log_terms() + baseline.log_terms(-1.0)
        return _student_interval(estimate, terms, level)
    rng = np.random.default_rng(seed)
    draws = current.log_speedup_draws(resamples, rng) - baseline.log_speedup_draws(resamples, rng)
    return _percentile_interval(estimate, draws, level)


def decide(interval: Interval, low: float | None = None, high: float | None = None) -> str:
    """What an interval says about the limits ``low`` and/or ``high`` on its value.

    BEYOND when the *whole* interval lies below ``low`` or above ``high``; WITHIN when it
    lies entirely inside the limits; UNDECIDED when it straddles one. An interval that is
    not ``estimated`` (one round: the estimate alone) is never BEYOND: WITHIN when the point
    is inside the limits, else UNDECIDED.
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


# --- a mode's speed against serial ---------------------------------------------------------


@dataclass(frozen=True)
class Speed:
    """A mode's speed against serial: the one measure every table, finding, plot, page, FAQ
    verdict and gate check shows and judges (made by ``Results.speed``).

    ``rounds`` is what it is computed from (paired in an interleaved run), ``interval`` the
    speedup with its interval at ``DEFAULT_LEVEL``; ``faster`` and ``slower`` read that
    interval against ``FASTER`` and ``SLOWER`` (:func:`decide`: one round, no interval, is
    judged on its estimate alone).
    """

    mode: str
    rounds: Rounds
    interval: Interval

    @classmethod
    def of(cls, mode: str, rounds: Rounds) -> Speed:
        return cls(mode, rounds, speedup_interval(rounds))

    @property
    def ratio(self) -> float:
        """How many times faster than serial (:func:`speedup`)."""
        return self.interval.estimate

    @property
    def low(self) -> float | None:
        """The interval's lower end; None when the rounds give no interval (one round)."""
        return self.interval.low if self.interval.estimated else None

    @property
    def high(self) -> float | None:
        return self.interval.high if self.interval.estimated else None

    @property
    def paired(self) -> bool:
        return self.rounds.paired

    @property
    def faster(self) -> bool:
        """Faster than serial: the whole interval lies above ``FASTER``."""
        return decide(self.interval, low=FASTER) == WITHIN

    @property
    def slower(self) -> bool:
        """Slower than serial beyond noise: the whole interval lies below ``SLOWER``."""
        return decide(self.interval, high=SLOWER) == WITHIN

    def at(self, level: float) -> Interval:
        """The speedup's interval at another ``level`` (the gate's ``--level``)."""
        if level == self.interval.level:
            return self.interval
        return speedup_interval(self.rounds, level=level)

    def check(
        self, *, at_least: float | None = None, at_most: float | None = None,
        level: float = DEFAULT_LEVEL,
    ) -> SpeedCheck:
        """:func:`compare_speed` of these rounds, at ``level``, against other limits."""
        interval = self.at(level)
        return SpeedCheck(interval, decide(interval, at_least, at_most), self.paired)
