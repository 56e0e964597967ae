"""Change points in a series of log speedups: e-divisive means with a Student t-test.

The method is Otava's (formerly Hunter; Fleming et al., arXiv 2301.03034), which replaced
e-divisive's permutation test with a t-test so that the answer is fast and the same every
time:

1. **Candidate** (e-divisive means, Matteson and James 2014, with exponent 1): in a stretch
   ``x[a:b]`` the split ``t`` maximising ``Q(t) = t'(n - t') / n * E(t)`` (``t' = t - a``,
   ``n = b - a``), where ``E`` is the energy distance between the two sides,
   ``2 mean|x_i - x_j| (across) - mean|x_i - x_k| (left) - mean|x_j - x_k| (right)``.
   Each side keeps ``MIN_SIDE`` points or more.
2. **Significance**: Welch's t-test of the two sides' log speedups
   (:func:`gpubench.stats.welch_p_value`); the split stands when ``p < MAX_P`` and the
   levels (geometric means) differ by at least ``MIN_MAGNITUDE``. Stretches are split
   again, left and right, until no split stands (binary segmentation).
3. **Pruning**: every change point is tested again on the stretch between its neighbours;
   the weakest that no longer stands is dropped, and the rest tested again, until all
   stand (Otava does the same).

``MAX_P`` (Otava's default) is small because the split tested is the best of many: the best
of ``n`` splits of pure noise looks far more significant than one split chosen in advance.
On simulated series of noise alone (``scripts/history_error_rates.py``, the table in
``docs/gating.md``) a change point was reported in none of 1000 series at 2% round noise and
in 3.4% of 30-run series at 5%, each of them too small to fail the check at ``--max-drop``
10%. ``MIN_MAGNITUDE`` keeps a long, quiet series from reporting steps too small to matter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gpubench.stats import welch_p_value

MAX_P = 0.001
MIN_MAGNITUDE = 0.05  # levels that differ by under 5% are not a change
MIN_SIDE = 3  # points on each side of a split


@dataclass(frozen=True)
class Split:
    """A change point at ``index`` (the first point of the new level) and its evidence."""

    index: int
    before: float  # level (geometric mean of the speedups) of the stretch before
    after: float  # ... and after
    p_value: float

    @property
    def ratio(self) -> float:
        """``after / before``: under 1, the speedup fell."""
        return self.after / self.before


def _energy_scores(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``Q(t)`` of every split ``t`` in ``[lo + MIN_SIDE, hi - MIN_SIDE]``, in order."""
    seg = x[lo:hi]
    n = seg.size
    dist = np.abs(seg[:, None] - seg[None, :])
    # Two-dimensional prefix sums: the sum of any block of distances in O(1).
    prefix = np.zeros((n + 1, n + 1))
    prefix[1:, 1:] = dist.cumsum(0).cumsum(1)

    def block(r0: int, r1: int, c0: int, c1: int) -> float:
        return float(prefix[r1, c1] - prefix[r0, c1] - prefix[r1, c0] + prefix[r0, c0])

    scores = []
    for t in range(MIN_SIDE, n - MIN_SIDE + 1):
        left, right = t, n - t
        across = block(0, t, t, n) / (left * right)
        within_left = block(0, t, 0, t) / (left * (left - 1))
        within_right = block(t, n, t, n) / (right * (right - 1))
        energy = 2 * across - within_left - within_right
        scores.append(left * right / n * energy)
    return np.asarray(scores)


def _test(x: np.ndarray, lo: int, t: int, hi: int) -> Split:
    before, after = x[lo:t], x[t:hi]
    return Split(t, math.exp(before.mean()), math.exp(after.mean()), welch_p_value(before, after))


def _stands(split: Split, max_p: float, min_magnitude: float) -> bool:
    return split.p_value < max_p and abs(math.log(split.ratio)) >= math.log1p(min_magnitude)


def _segment(x: np.ndarray, lo: int, hi: int, max_p: float, min_magnitude: float) -> list[int]:
    if hi - lo < 2 * MIN_SIDE:
        return []
    scores = _energy_scores(x, lo, hi)
    t = lo + MIN_SIDE + int(np.argmax(scores))
    if not _stands(_test(x, lo, t, hi), max_p, min_magnitude):
        return []
    return (_segment(x, lo, t, max_p, min_magnitude) + [t]
            + _segment(x, t, hi, max_p, min_magnitude))  # fmt: skip


def _retest(x: np.ndarray, points: list[int]) -> list[Split]:
    bounds = [0, *points, x.size]
    return [_test(x, bounds[i], bounds[i + 1], bounds[i + 2]) for i in range(len(points))]


def change_points(
    logs: Sequence[float], *, max_p: float = MAX_P, min_magnitude: float = MIN_MAGNITUDE
) -> list[Split]:
    """The change points of a series of log speedups, in order, each tested on the stretch
    between its neighbours."""
    x = np.asarray(logs, dtype=float)
    points = _segment(x, 0, x.size, max_p, min_magnitude)
    while points:
        splits = _retest(x, points)
        weak = [s for s in splits if not _stands(s, max_p, min_magnitude)]
        if not weak:
            return splits
        points.remove(max(weak, key=lambda s: s.p_value).index)
    return []


def levels(logs: Sequence[float], splits: Sequence[Split]) -> list[tuple[int, int, float, float]]:
    """Each segment between change points: (start, end, mean, standard deviation) of logs."""
    x = np.asarray(logs, dtype=float)
    bounds = [0, *(s.index for s in splits), x.size]
    out = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        seg = x[lo:hi]
        sd = float(seg.std(ddof=1)) if seg.size > 1 else 0.0
        out.append((lo, hi, float(seg.mean()), sd))
    return out
