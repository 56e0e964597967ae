"""Series of results files made from a real one: its round times scaled per commit.

Every round of every mode is multiplied by noise drawn uniformly in ``±noise`` (round-time
noise), and from ``drop_at`` (1-based) on the rounds of ``mode`` by ``1 / (1 - drop)``, so that
its speedup over serial falls by ``drop``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FIXTURE = Path(__file__).parent / "fixtures" / "report_2slots.json"


def commit_of(i: int) -> str:
    return f"{i:02d}" + "c0ffee" * 6 + "ab"


def _scale(mode: dict[str, Any], factors: np.ndarray) -> None:
    mode["round_times_s"] = [round(t * float(f), 6) for t, f in
                             zip(mode["round_times_s"], factors, strict=True)]
    measured = [r for r in mode.get("rounds", ()) if not r.get("warmup")]
    for record, time_s in zip(measured, mode["round_times_s"], strict=False):
        record["time_s"] = time_s


def results_series(
    n: int = 12,
    *,
    mode: str = "multi-gpu",
    drop: float = 0.0,
    drop_at: int = 7,
    noise: float = 0.03,
    seed: int = 0,
    environment: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """``n`` results objects, commit ``i`` (1-based) the ``i``-th."""
    original = json.loads(FIXTURE.read_text()) if base is None else base
    rng = np.random.default_rng(seed)
    out = []
    for i in range(1, n + 1):
        data = copy.deepcopy(dict(original))
        data["environment"] = {**data["environment"], **(environment or {}),
                               "git_commit": commit_of(i)}
        data["created_utc"] = f"2025-02-{i:02d}T12:00:00Z" if i <= 28 else \
            f"2025-03-{i - 28:02d}T12:00:00Z"
        for m in data["modes"]:
            factors = rng.uniform(1 - noise, 1 + noise, len(m["round_times_s"]))
            if m["name"] == mode and drop and i >= drop_at:
                factors = factors / (1 - drop)
            _scale(m, factors)
        out.append(data)
    return out


def write_series(folder: Path, series: list[dict[str, Any]], prefix: str = "run") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(series, 1):
        path = folder / f"{prefix}-{i:02d}.json"
        path.write_text(json.dumps(data, sort_keys=True))
        paths.append(path)
    return paths
