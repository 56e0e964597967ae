"""The result check's tolerance comes from the run's measured noise floor: a correct
computation with its sums done otherwise (float64) sets it, with a factor and a lower bound;
``--tolerance`` wins; the floor and each mode's tolerance are recorded once."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from gpubench.results import from_dict, to_dict
from gpubench.run import prepare as prepare_module
from gpubench.run.equivalence import (
    CPU_TOLERANCE,
    CUDA_TOLERANCE,
    MAX_TOLERANCE,
    NOISE_FACTOR,
    WRONG_CLIENT_DIFF,
    decide_tolerance,
)
from gpubench.run.harness import compare
from gpubench.run.prepare import NOISE_STEPS, prepare
from tests.conftest import CASES, run_config


def test_the_tolerance_is_the_floor_times_the_factor_never_under_the_lower_bound() -> None:
    assert decide_tolerance(1e-4, False) == pytest.approx(NOISE_FACTOR * 1e-4)
    assert decide_tolerance(1e-7, False) == CPU_TOLERANCE
    assert decide_tolerance(1e-7, True) == CUDA_TOLERANCE
    assert decide_tolerance(None, False) == CPU_TOLERANCE
    assert decide_tolerance(math.inf, False) == CPU_TOLERANCE
    # a floor as large as a wrong client's difference cannot hide one
    assert decide_tolerance(0.05, False) == MAX_TOLERANCE
    assert decide_tolerance(0.05, True) == CUDA_TOLERANCE


@pytest.mark.parametrize("any_cuda", [False, True])
@pytest.mark.parametrize("floor", [None, 0.0, 1e-7, 3e-5, 1e-3, 0.05, 0.3, 1.0, math.inf])
def test_no_modes_tolerance_reaches_a_wrong_clients_distance(any_cuda, floor) -> None:
    from gpubench.modes import REGISTRY, mode_class

    scales = {mode_class(name).cuda_tolerance_scale for name in REGISTRY}
    assert max(scales) > 1  # vectorized widens on CUDA
    for scale in scales:
        tolerance = decide_tolerance(floor, any_cuda, scale)
        assert tolerance <= MAX_TOLERANCE < WRONG_CLIENT_DIFF / 2


def test_every_check_of_a_mode_uses_its_one_tolerance(monkeypatch) -> None:
    from gpubench.modes.vectorized import VectorizedMode
    from gpubench.run.harness import _Harness

    seen: list[float] = []
    real = _Harness.check_round

    def check(self, out, update, step, tolerance):
        seen.append(tolerance)
        return real(self, out, update, step, tolerance)

    monkeypatch.setattr(_Harness, "check_round", check)
    cfg = run_config(modes=("serial", "vectorized"), devices="cpu:1", warmup=0, rounds=1)
    prep = prepare(cfg)
    # On CUDA, vectorized's 4x of the 0.1 lower bound would be 0.4: capped like every mode's
    gpu = replace(prep, devices=(replace(prep.devices[0], kind="cuda", id="cuda:0"),))
    assert gpu.tolerance_of(VectorizedMode) == MAX_TOLERANCE
    # each mode's own value, not the run's (here set apart from it on purpose)
    prep = replace(prep, noise_floor=2e-4, tolerance=0.05)
    results = compare(cfg, prepared=prep)
    # the round's consistency check and the per-client check: the same value
    assert seen == [pytest.approx(2e-2)] * 2
    assert [m.tolerance for m in results.modes] == [pytest.approx(2e-2)] * 2


@pytest.fixture
def trained(monkeypatch) -> list[int]:
    """The samples each noise-floor training saw, in order."""
    seen: list[int] = []
    real = prepare_module._fingerprint

    def counting(case, cfg, device, client, x, y, *rest):
        seen.append(int(x.shape[0]))
        return real(case, cfg, device, client, x, y, *rest)

    monkeypatch.setattr(prepare_module, "_fingerprint", counting)
    return seen


def test_prepare_measures_a_floor_on_a_few_batches_and_derives_the_tolerance(trained):
    seen = trained
    prep = prepare(run_config(samples=96, batch_size=16))
    # float32 and float64, each on the client's first NOISE_STEPS batches only
    assert seen == [NOISE_STEPS * 16] * 2
    assert prep.noise_floor is not None and 0 < prep.noise_floor < 1e-4
    assert prep.tolerance == decide_tolerance(prep.noise_floor, False)


def test_the_users_tolerance_wins_and_the_floor_is_still_recorded() -> None:
    prep = prepare(run_config(tolerance=0.25))
    assert prep.tolerance == 0.25 and prep.noise_floor is not None


def test_a_case_that_draws_random_numbers_gets_the_lower_bound() -> None:
    prep = prepare(run_config(case=f"{CASES}:dropout_case"))
    assert prep.noise_floor is None and prep.tolerance == CPU_TOLERANCE


def test_a_high_floor_widens_every_modes_tolerance_recorded_once(monkeypatch) -> None:
    cfg = run_config(modes=("serial", "threaded"))
    prep = prepare(cfg)
    prep = replace(prep, noise_floor=2e-4, tolerance=decide_tolerance(2e-4, False))
    results = compare(cfg, prepared=prep)
    assert results.config.noise_floor == 2e-4
    assert results.config.tolerance_used == pytest.approx(2e-2)
    for m in results.modes:
        assert m.tolerance == pytest.approx(2e-2)
    again = from_dict(to_dict(results))
    assert [m.tolerance for m in again.modes] == [m.tolerance for m in results.modes]


def test_an_older_file_without_mode_tolerances_reads_the_runs() -> None:
    results = compare(run_config(modes=("serial",)))
    data = to_dict(results)
    for m in data["modes"]:
        m["extra"].pop("tolerance")
    assert [m.tolerance for m in from_dict(data).modes] == [results.config.tolerance_used]


@pytest.mark.slow
def test_vectorized_on_one_slot_of_two_cores_computes_serials_result() -> None:
    # --devices cpu:1 on a 2-core machine: two intra-op threads sum the batched products
    cfg = run_config(modes=("serial", "vectorized"), devices="cpu:1", clients=10,
                     batch_size=64, samples=256, warmup=1, rounds=2)
    results = compare(cfg)
    vec = results.mode("vectorized")
    assert vec is not None and vec.status == "ok", vec and vec.error
    assert vec.same_result is True, (vec.worst_client_diff, vec.tolerance)
    assert vec.worst_client_diff is not None and vec.tolerance is not None
    assert vec.worst_client_diff <= vec.tolerance


def test_a_large_model_measures_its_floor_on_fewer_samples(monkeypatch, trained) -> None:
    seen = trained
    monkeypatch.setattr(prepare_module, "NOISE_WORK", 109386 * 5)  # mlp: 109386 parameters
    prep = prepare(run_config(samples=96, batch_size=16))
    assert seen == [5, 5] and prep.noise_floor is not None
