"""The pytest-benchmark suite: one benchmark per (case, mode), one federated round each.

    pytest bench_cases --benchmark-json out.json
    gpubench gate --baseline gates/cpu-slots.toml out.json

Each benchmark starts its mode once (cold start, not timed), then times whole rounds (every
client trains, then FedAvg) with ``benchmark.pedantic``, exactly the span the harness times.
``extra_info`` carries what ``gpubench gate`` needs: mode, case, client and device counts,
and the speedup against the serial benchmark of the same case, which runs first.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
import torch

from gpubench.config import RunConfig, SampleSizes, TrainConfig
from gpubench.modes import NotApplicable, mode_class
from gpubench.results import median
from gpubench.run.harness import Prepared, fedavg_update, prepare
from gpubench.train.updates import FINGERPRINT_SIZE

# Per case, from its serial benchmark: round times and the FedAvg result to match.
_SERIAL: dict[str, tuple[list[float], torch.Tensor]] = {}


def _prepared(config: pytest.Config, case: str, mode: str) -> Prepared:
    run = RunConfig(
        case=case,
        clients=config.getoption("--gpubench-clients"),
        train=TrainConfig(
            batch_size=config.getoption("--gpubench-batch-size"),
            samples=SampleSizes.parse(config.getoption("--gpubench-samples")),
        ),
        devices=config.getoption("--gpubench-devices"),
        modes=(mode,),
        warmup=config.getoption("--gpubench-warmup"),
        rounds=config.getoption("--gpubench-rounds"),
        sample_interval_s=None,
    )
    return prepare(run)


def test_round(
    benchmark: Any, request: pytest.FixtureRequest, gpubench_case: str, gpubench_mode: str
) -> None:
    prep = _prepared(request.config, gpubench_case, gpubench_mode)
    mode = mode_class(gpubench_mode)(prep.plan)
    t0 = time.perf_counter()
    try:
        mode.start()
    except NotApplicable as exc:
        mode.close()
        pytest.skip(f"{gpubench_mode}: {exc}")
    cold_start_s = time.perf_counter() - t0
    aggregates: list[torch.Tensor] = []

    def one_round() -> None:
        fingerprints = torch.full((prep.plan.clients, FINGERPRINT_SIZE), math.nan,
                                  dtype=torch.float64)
        out = mode.run_round(prep.global_state, fingerprints)
        update = fedavg_update(out)
        aggregates.append((prep.global_state.to(torch.float64) + update).to(torch.float32))

    try:
        benchmark.group = f"gpubench:{gpubench_case}"
        benchmark.pedantic(
            one_round,
            rounds=prep.config.rounds,
            warmup_rounds=prep.config.warmup,
            iterations=1,
        )
    finally:
        mode.close()

    rounds = list(benchmark.stats.stats.data)
    if gpubench_mode == "serial":
        _SERIAL[gpubench_case] = (rounds, aggregates[-1])
    serial = _SERIAL.get(gpubench_case)
    diff = None if serial is None else float((aggregates[-1] - serial[1]).abs().max())
    benchmark.extra_info.update(
        {
            "gpubench_mode": gpubench_mode,
            "gpubench_case": gpubench_case,
            "clients": prep.config.clients,
            "devices": len(prep.devices),
            "device_ids": list(mode.device_ids),
            "workers": mode.workers,
            "batch_size": prep.config.train.batch_size,
            "samples_per_client": str(prep.config.train.samples),
            "cold_start_s": cold_start_s,
            "speedup_vs_serial": None if serial is None else median(serial[0]) / median(rounds),
            "max_abs_diff_vs_serial": diff,
        }
    )
    # A mode that computes a different model is not a faster version of the same round.
    assert diff is None or diff <= prep.tolerance, (
        f"{gpubench_mode} differs from serial by {diff:.3g} (tolerance {prep.tolerance:.3g})"
    )
