"""Did every mode compute serial's result? Per client, every round, from fingerprints.

Each round every mode hands back a fingerprint of each client's update (see
:mod:`gpubench.train.updates`). A client's difference from serial is

    max |fp_mode - fp_serial| / max |fp_serial|

for the same client in the same round: relative to the size of serial's update of that
client, so one tolerance fits a tiny MLP and ResNet-18 alike. A client left out, not trained,
trained twice, trained on another client's data, or a row from an earlier round (every round
starts from a global model of its own) all give about 1 or more.

Default tolerances (:func:`default_tolerance`), from what the same round gives in modes that
do the same work:

- CPU slots: 1e-3. Serial, threaded and the process modes agree bitwise (0); vectorized sums
  its batched products in another order: up to 2e-5 measured (cnn, 6 clients, batch 32).
- CUDA: 0.1. cuDNN convolutions run in TF32 by default and cuDNN/cuBLAS pick kernels per
  process and thread, some accumulating with atomics, and SGD carries the low bits over the
  local steps. On an H200 (cnn, batch 32) the aggregate of 10 clients differed by up to
  1.5e-4 between modes while one client's update reached 1.1e-2: about 4% of an update per
  client. Vectorized's batched (grouped) convolutions reached 9.4e-4 in the aggregate, so it
  asks for 4x (0.4). Every deliberate mistake above still gives ~1.

Only ``clients x K`` numbers per round are kept per mode, never the states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

CPU_TOLERANCE = 1e-3
CUDA_TOLERANCE = 0.1


def default_tolerance(any_cuda: bool) -> float:
    return CUDA_TOLERANCE if any_cuda else CPU_TOLERANCE


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
