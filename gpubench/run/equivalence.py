"""Did every mode compute serial's result? Per client, every round, from fingerprints.

Each round every mode hands back a fingerprint of each client's update (see
:mod:`gpubench.train.updates`). A client's difference from serial is

    max |fp_mode - fp_serial| / max |fp_serial|

for the same client in the same round: relative to the size of serial's update of that
client, so one tolerance fits a tiny MLP and ResNet-18 alike. A client left out, not trained,
trained twice, trained on another client's data, or a row from an earlier round (every round
starts from a global model of its own) all give about 1 or more.

The tolerance comes from the run's own **noise floor** (:func:`decide_tolerance`): before
the modes start, one client is trained twice from the first global model as serial trains
it, in float32 and in float64 (``gpubench.run.prepare.measure_noise_floor``), and the
relative difference of the two fingerprints (:func:`relative_diff`, the measure the check
uses) is how far a correct computation drifts when its sums come out otherwise. Each mode's
tolerance is ``NOISE_FACTOR`` (100) times that floor, and never under a lower bound:

- the factor: the floor is one client, on its first batch or two, with one other
  order of the sums; the check covers every client of every round, over every step, with
  orders (batched products, other kernels, another thread count) the floor did not try.
  Measured on CPU slots, float32 against float64: mlp 1e-6 to 6e-6 whatever the steps; cnn
  2e-6 after one step, 5e-6 after two, 2e-5 to 8e-5 after four; vectorized against serial:
  up to 1e-6 (mlp) and 2e-5 (cnn), inside 100x the floor.
- the lower bounds (:func:`default_tolerance`): 1e-3 on CPU slots; 0.1 on CUDA, where cuDNN
  runs convolutions in TF32 by default and cuDNN/cuBLAS pick kernels per process and thread
  (some accumulating with atomics): on an H200 (cnn, batch 32) the aggregate of 10 clients
  differed by up to 1.5e-4 between modes while one client's update reached 1.1e-2. A mode
  whose kernels differ more says by how much (vectorized's grouped convolutions: 4x, 9.4e-4
  in the aggregate, ``cuda_tolerance_scale``), never past the cap.

A client left out, trained twice, on another client's data or from an earlier round differs
by 0.3 or more (``WRONG_CLIENT_DIFF``): 300x the CPU slots' lower bound. One function,
:func:`decide_tolerance`, gives each mode its one tolerance, used by the round's consistency
check and the per-client check alike: a tolerance set by the floor stays under 3e-3 for a
floor under 3e-5, and no floor, lower bound or mode's widening takes it above
``MAX_TOLERANCE`` (0.1, a third of a wrong client's distance; on CUDA the lower bound is
already the cap, so vectorized's 4x changes nothing there and its clients beyond 0.1 are
adjudicated). ``--tolerance`` replaces all of it.

The floor is one client's first batch or two; it does not say how far a correct float32
computation drifts over a whole local training. Where a ReLU's pre-activation or a max sits
at its kink, a last-bit difference can take the other branch and the rest of the training
amplifies it: correct arithmetic, a chaotic path. A client beyond the tolerance is therefore
judged by its own sensitivity (:mod:`gpubench.run.adjudicate`), not failed at once.

Only ``clients x K`` numbers per round are kept per mode, never the states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

CPU_TOLERANCE = 1e-3
CUDA_TOLERANCE = 0.1
NOISE_FACTOR = 100.0
# How far a wrong client lands from serial's (left out, trained twice, on other data, a row
# of an earlier round): 0.3 or more, measured by tests/wrong_modes.py on mlp and cnn.
WRONG_CLIENT_DIFF = 0.3
# No tolerance reaches a third of a wrong client's distance, whatever the floor or the mode.
MAX_TOLERANCE = 0.1


def default_tolerance(any_cuda: bool) -> float:
    """The lower bound of the tolerance (the whole of it when no floor was measured)."""
    return CUDA_TOLERANCE if any_cuda else CPU_TOLERANCE


def decide_tolerance(
    noise_floor: float | None,
    any_cuda: bool,
    cuda_scale: float = 1.0,
    user: float | None = None,
) -> float:
    """The one tolerance of a mode: the user's (``--tolerance``) if given; else
    ``NOISE_FACTOR`` times the floor, at least the lower bound, widened by the mode's
    ``cuda_scale`` on CUDA, and never above ``MAX_TOLERANCE``."""
    if user is not None:
        return user
    tolerance = default_tolerance(any_cuda)
    if noise_floor is not None and math.isfinite(noise_floor):
        tolerance = max(tolerance, NOISE_FACTOR * noise_floor)
    if any_cuda:
        tolerance *= cuda_scale
    return min(tolerance, MAX_TOLERANCE)


def relative_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over the fingerprint, relative to max |b| (b: the reference; NaN: inf)."""
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.inf
    scale = float(np.max(np.abs(b), initial=0.0)) or float(np.max(np.abs(a), initial=0.0))
    diff = float(np.max(np.abs(a - b), initial=0.0))
    if scale == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / scale


def client_diffs(mode: np.ndarray, reference: np.ndarray) -> list[float]:
    """Per client (rows), the relative difference of ``mode`` from ``reference``."""
    return [relative_diff(mode[c], reference[c]) for c in range(reference.shape[0])]


@dataclass
class Comparison:
    """How one mode's rounds compare with serial's."""

    per_step: dict[int, list[float]] = field(default_factory=dict)
    worst_client: int | None = None
    worst_step: int | None = None
    worst_diff: float | None = None

    def add(self, step: int, diffs: list[float]) -> None:
        self.per_step[step] = diffs
        for client, d in enumerate(diffs):
            if self.worst_diff is None or d > self.worst_diff:
                self.worst_client, self.worst_step, self.worst_diff = client, step, d


class Ledger:
    """Every mode's fingerprints, per step of the schedule (warm-up rounds included)."""

    def __init__(self) -> None:
        self.fingerprints: dict[str, dict[int, np.ndarray]] = {}

    def record(self, mode: str, step: int, fingerprints: np.ndarray) -> None:
        self.fingerprints.setdefault(mode, {})[step] = np.array(fingerprints, dtype=np.float64)

    def compare(self, mode: str, reference: str) -> Comparison | None:
        """``mode`` against ``reference`` on every step both ran; None if they share none."""
        mine = self.fingerprints.get(mode, {})
        ref = self.fingerprints.get(reference, {})
        steps = sorted(set(mine) & set(ref))
        if not steps:
            return None
        out = Comparison()
        for step in steps:
            out.add(step, client_diffs(mine[step], ref[step]))
        return out


def consistency_diff(aggregate_fp: np.ndarray, fingerprints: np.ndarray, weights: np.ndarray) -> float:
    """How far the fingerprint of the aggregate's update is from the weighted mean of the
    clients' fingerprints (the sketch is linear, so for true FedAvg they agree)."""
    mean = (fingerprints * weights[:, None]).sum(axis=0) / weights.sum()
    return relative_diff(aggregate_fp, mean)
