"""Statistics behind the gate and the report's marks: speedups, intervals, pairing, error rates."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gpubench.results import ModeResult, Results, RoundRecord
from gpubench.stats import (
    BEYOND,
    DEFAULT_LEVEL,
    MIN_PAIRS,
    UNDECIDED,
    WITHIN,
    Interval,
    Rounds,
    change_interval,
    compare_speed,
    decide,
    iqr,
    median,
    rounds_vs_serial,
    speedup,
    speedup_interval,
    spread,
    summarize,
)

LIMIT = 0.90  # the gate's default: FAIL when the whole interval is below 1 - max_drop


def test_median_iqr_spread() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([1.0, 2.0, 3.0, 4.0]) == 2.5
    assert iqr([1.0, 2.0, 3.0, 4.0, 5.0]) == 2.0
    assert spread([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2.0 / 3.0)
    assert spread([2.0]) == 0.0
    s = summarize([1.0, 1.02, 0.99, 1.0])
    assert s.n == 4 and s.median == 1.0 and not s.noisy
    assert summarize([1.0, 1.0, 1.5, 1.0]).noisy
    with pytest.raises(ValueError):
        median([])


def test_the_interval_is_seeded_and_has_width() -> None:
    rounds = Rounds.of([1.0, 1.02, 0.98, 1.05, 0.97], [0.5, 0.52, 0.49, 0.55, 0.51])
    a = speedup_interval(rounds)
    assert a == speedup_interval(rounds)
    assert a.estimate == pytest.approx(1.0 / 0.51) == speedup(rounds)
    assert a.estimated and a.level == DEFAULT_LEVEL
    assert a.low < a.estimate < a.high and a.high / a.low < 1.25
    assert speedup_interval(rounds, seed=1) != a


def test_one_round_gives_no_interval() -> None:
    ci = speedup_interval(Rounds.of([1.0], [0.5, 0.6]))
    assert not ci.estimated and ci.low == ci.high == ci.estimate == pytest.approx(1.0 / 0.55)


def test_few_rounds_give_the_whole_range_never_a_crossing() -> None:
    rounds = Rounds.of([1.0, 1.1, 0.9], [0.5, 0.55, 0.45])
    ci = speedup_interval(rounds)
    assert not ci.estimated
    assert (ci.low, ci.high) == pytest.approx((0.9 / 0.55, 1.1 / 0.45))  # every resample's value
    assert decide(ci, 1.5) == WITHIN  # clearly inside: 1.64 .. 2.44
    assert decide(ci, 3.0) == UNDECIDED  # beyond, on 3 rounds: not a FAIL
    assert decide(replace(ci, estimated=True), 3.0) == BEYOND


@pytest.mark.parametrize("bad", [[], [0.0, 1.0], [1.0, math.nan], [-1.0, 1.0]])
def test_bad_round_times_are_refused(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        Rounds.of([1.0, 1.0], bad)


def test_paired_rounds_need_as_many_on_each_side() -> None:
    with pytest.raises(ValueError, match="as many"):
        Rounds.of([1.0, 1.0, 1.0], [0.5, 0.5], paired=True)


rounds = st.lists(st.floats(0.01, 100.0), min_size=2, max_size=12)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(serial=rounds, mode=rounds, scale=st.floats(1e-3, 1e3), factor=st.floats(0.1, 10.0))
def test_the_interval_ignores_the_unit_of_time_and_follows_the_mode(
    serial: list[float], mode: list[float], scale: float, factor: float
) -> None:
    a = speedup_interval(Rounds.of(serial, mode), resamples=500)
    b = speedup_interval(Rounds.of([t * scale for t in serial], [t * scale for t in mode]),
                         resamples=500)  # fmt: skip
    assert (b.estimate, b.low, b.high) == pytest.approx((a.estimate, a.low, a.high), rel=1e-9)
    # a mode ``factor`` times slower: the same draws, every bound divided by ``factor``
    c = speedup_interval(Rounds.of(serial, [t * factor for t in mode]), resamples=500)
    assert (c.estimate, c.low, c.high) == pytest.approx(
        (a.estimate / factor, a.low / factor, a.high / factor), rel=1e-9
    )


# --- paired rounds ------------------------------------------------------------------------


def test_paired_speedup_is_the_median_of_the_per_round_ratios() -> None:
    serial, mode = [1.0, 2.0, 4.0], [0.5, 1.0, 4.0]  # ratios 2, 2, 1
    assert speedup(Rounds.of(serial, mode, paired=True)) == pytest.approx(2.0)
    assert speedup(Rounds.of(serial, mode)) == pytest.approx(2.0 / 1.0)
    serial, mode = [1.0, 1.1, 3.0], [0.5, 2.0, 1.0]  # ratios 2, 0.55, 3; medians 1.1 / 1.0
    assert speedup(Rounds.of(serial, mode, paired=True)) == pytest.approx(2.0)
    assert speedup(Rounds.of(serial, mode)) == pytest.approx(1.1)


pairs = st.lists(
    st.tuples(st.floats(0.01, 10.0), st.floats(0.01, 10.0), st.floats(0.2, 5.0)),
    min_size=2,
    max_size=12,
)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(pairs=pairs)
def test_drift_common_to_a_pair_cancels(pairs: list[tuple[float, float, float]]) -> None:
    serial = [s for s, _, _ in pairs]
    mode = [m for _, m, _ in pairs]
    drift = [d for _, _, d in pairs]
    steady = speedup_interval(Rounds.of(serial, mode, paired=True), resamples=500)
    drifting = Rounds.of(
        [s * d for s, d in zip(serial, drift, strict=True)],
        [m * d for m, d in zip(mode, drift, strict=True)],
        paired=True,
    )
    got = speedup_interval(drifting, resamples=500)
    assert (got.estimate, got.low, got.high) == pytest.approx(
        (steady.estimate, steady.low, steady.high), rel=1e-9
    )


def test_pairing_narrows_the_interval_under_common_drift() -> None:
    rng = np.random.default_rng(0)
    drift = np.exp(rng.normal(0.0, 0.10, 10))
    serial = drift * np.exp(rng.normal(0.0, 0.03, 10))
    mode = drift * np.exp(rng.normal(0.0, 0.03, 10)) / 1.9
    paired = speedup_interval(Rounds.of(serial, mode, paired=True))
    unpaired = speedup_interval(Rounds.of(serial, mode))
    assert math.log(paired.high / paired.low) < 0.5 * math.log(unpaired.high / unpaired.low)
    assert paired.contains(1.9)


def test_few_interleaved_rounds_fall_back_to_unpaired() -> None:
    few = [1.0] * (MIN_PAIRS - 1)
    assert not Rounds.interleaved(few, few).paired
    assert Rounds.interleaved(few + [1.0], few + [1.0]).paired
    assert not Rounds.interleaved([1.0] * MIN_PAIRS, [1.0] * (MIN_PAIRS + 1)).paired


def _mode(name: str, times: dict[int, float], warmup: int = 1) -> ModeResult:
    records = [RoundRecord(i, True, 9.0) for i in range(warmup)]
    records += [RoundRecord(i, False, t) for i, t in sorted(times.items())]
    return ModeResult(
        name, "ok", round_times_s=tuple(t for _, t in sorted(times.items())),
        rounds=tuple(records), warmup_times_s=(9.0,) * warmup,
    )  # fmt: skip


def test_an_interleaved_run_pairs_rounds_by_index() -> None:
    serial_times = {i: 1.0 + i / 10 for i in range(1, 9)}
    mode_times = {i: (1.0 + i / 10) / 2 for i in range(1, 9) if i != 4}  # round 4 lost
    serial, mode = _mode("serial", serial_times), _mode("multi-gpu", mode_times)
    run = Results({}, {"interleave": True}, (serial, mode))
    paired = rounds_vs_serial(run, mode)
    assert paired is not None and paired.paired
    assert paired.reference == tuple(t for i, t in serial_times.items() if i != 4)
    assert speedup(paired) == pytest.approx(2.0)
    sequential = rounds_vs_serial(Results({}, {"interleave": False}, (serial, mode)), mode)
    assert sequential is not None and not sequential.paired
    assert len(sequential.reference) == 8 and len(sequential.candidate) == 7


def test_without_round_records_pairing_needs_equal_counts() -> None:
    serial = ModeResult("serial", "ok", round_times_s=(1.0,) * 8)
    same = ModeResult("multi-gpu", "ok", round_times_s=(0.5,) * 8)
    other = ModeResult("threaded", "ok", round_times_s=(2.0,) * 7)
    run = Results({}, {"interleave": True}, (serial, same, other))
    assert rounds_vs_serial(run, same).paired  # type: ignore[union-attr]
    assert not rounds_vs_serial(run, other).paired  # type: ignore[union-attr]
    failed = ModeResult("multiprocess", "failed", error="boom")
    assert rounds_vs_serial(run, failed) is None


# --- the one decision -----------------------------------------------------------------------

bound = st.floats(0.1, 10.0)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(a=bound, b=bound, low=st.none() | bound, high=st.none() | bound, point=st.booleans())
def test_decide_reads_the_whole_interval(
    a: float, b: float, low: float | None, high: float | None, point: bool
) -> None:
    assume(low is None or high is None or low <= high)
    lo, hi = min(a, b), max(a, b)
    interval = Interval(lo, lo, hi, DEFAULT_LEVEL, estimated=not point)
    outcome = decide(interval, low, high)
    beyond = (low is not None and hi < low) or (high is not None and lo > high)
    inside = (low is None or lo >= low) and (high is None or hi <= high)
    if point:
        assert outcome == (WITHIN if inside else UNDECIDED)  # too few rounds never cross
    else:
        assert outcome == (BEYOND if beyond else WITHIN if inside else UNDECIDED)


def test_compare_speed_answers_faster_and_slower() -> None:
    fast = Rounds.of([1.0, 1.01, 0.99, 1.0, 1.02], [0.5, 0.51, 0.49, 0.5, 0.5])
    assert compare_speed(fast, at_least=1.05).holds
    assert compare_speed(fast, at_most=0.95).outcome == BEYOND
    even = Rounds.of([1.0, 1.1, 0.9, 1.05, 0.95], [1.0, 0.9, 1.1, 0.95, 1.05])
    assert compare_speed(even, at_least=1.05).outcome == UNDECIDED
    assert not compare_speed(even, at_least=1.05).holds


# --- error rates of the FAIL rule ---------------------------------------------------------


def _run(rng: np.random.Generator, interleaved: bool, n: int, drift: float, noise: float,
         speedup_: float, outliers: bool = False) -> Rounds:  # fmt: skip
    common = np.exp(rng.normal(0.0, drift, n))
    serial = common * np.exp(rng.normal(0.0, noise, n))
    own = common if interleaved else np.exp(rng.normal(0.0, drift, n))
    mode = own * np.exp(rng.normal(0.0, noise, n)) / speedup_
    if outliers:  # now and then a round hits a hiccup (another tenant, a page-in)
        serial *= np.where(rng.random(n) < 0.05, 1.5, 1.0)
        mode *= np.where(rng.random(n) < 0.05, 1.5, 1.0)
    return Rounds.interleaved(serial, mode) if interleaved else Rounds.of(serial, mode)


def _fail_rate(
    rng: np.random.Generator,
    trials: int,
    n: int,
    noise: float,
    speedup_: float,
    ratio: float,
    *,
    outliers: bool = False,
    drift: float = 0.0,
    interleaved: bool = False,
) -> float:
    """Share of trials in which the gate's rule FAILs a mode whose speedup changed by ``ratio``."""
    fails = 0
    for _ in range(trials):
        base = _run(rng, interleaved, n, drift, noise, speedup_, outliers)
        cur = _run(rng, interleaved, n, drift, noise, speedup_ * ratio, outliers)
        fails += decide(change_interval(cur, base), LIMIT) == BEYOND
    return fails / trials


def test_error_rates_of_sequential_runs() -> None:
    """Identical distributions <= 1% FAIL; a 25% drop caught >= 95% (10 rounds, 5% noise)."""
    rng = np.random.default_rng(5)
    assert _fail_rate(rng, 1000, n=10, noise=0.05, speedup_=1.9, ratio=1.0) <= 0.01
    assert _fail_rate(rng, 500, n=10, noise=0.05, speedup_=1.9, ratio=0.75) >= 0.95


def test_error_rates_of_interleaved_runs_under_common_drift() -> None:
    """10 interleaved rounds, 10% drift common to a round, 3% noise of each mode's own."""
    rng = np.random.default_rng(6)
    kw = {"n": 10, "noise": 0.03, "speedup_": 1.9, "drift": 0.10, "interleaved": True}
    assert _fail_rate(rng, 1000, ratio=LIMIT, **kw) <= 0.01  # type: ignore[arg-type]
    assert _fail_rate(rng, 500, ratio=0.75, **kw) >= 0.95  # type: ignore[arg-type]
    # the same machine, sequential: drift is noise the statistic cannot remove
    kw["interleaved"] = False
    assert _fail_rate(rng, 300, ratio=0.75, **kw) < 0.5  # type: ignore[arg-type]


@settings(max_examples=10, derandomize=True, deadline=None)
@given(
    n=st.integers(3, 20),
    noise=st.floats(0.01, 0.15),
    speedup_=st.floats(0.3, 4.0),
    outliers=st.booleans(),
    interleaved=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_identical_distributions_rarely_fail(
    n: int, noise: float, speedup_: float, outliers: bool, interleaved: bool, seed: int
) -> None:
    rate = _fail_rate(np.random.default_rng(seed), 200, n, noise, speedup_, 1.0,
                      outliers=outliers, drift=0.1, interleaved=interleaved)  # fmt: skip
    assert rate <= 0.01, f"false-FAIL {rate:.1%} with {n} rounds at {noise:.0%} noise"


@settings(max_examples=6, derandomize=True, deadline=None)
@given(
    n=st.integers(10, 20),
    noise=st.floats(0.01, 0.05),
    drop=st.floats(0.25, 0.6),
    speedup_=st.floats(0.3, 4.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_real_drops_are_caught(
    n: int, noise: float, drop: float, speedup_: float, seed: int
) -> None:
    rate = _fail_rate(np.random.default_rng(seed), 150, n, noise, speedup_, 1.0 - drop)
    assert rate >= 0.95, f"caught {rate:.1%} of {drop:.0%} drops ({n} rounds, {noise:.0%} noise)"
