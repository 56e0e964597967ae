"""A client beyond the tolerance is judged by its own sensitivity: a correct computation that
took another path agrees, a client trained on slightly other data or left out still differs;
the verdicts are recorded, read back, and spoken by the findings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpubench.config import RunConfig, SampleSizes, TrainConfig
from gpubench.findings import compute_findings
from gpubench.report.findings import finding_text
from gpubench.results import (
    Adjudication,
    ClientAdjudication,
    ModeResult,
    Results,
    RoundRecord,
    from_dict,
    to_dict,
    to_json,
)
from gpubench.run.adjudicate import (
    ADJUDICATED_MAX,
    Retrainer,
    Suspect,
    as_serial,
    client_trainer,
    judge,
    last_bit,
    settled,
    train_fingerprint,
)
from gpubench.run.equivalence import CPU_TOLERANCE, relative_diff
from gpubench.run.prepare import prepare
from gpubench.train.fl import build_datasets

OWN_TRAIN = Path(__file__).resolve().parent / "own_train_cases.py"


def prepared(lr: float, samples: int):
    # Two slots of one core each on this machine: serial's client trains on one thread.
    train = TrainConfig(batch_size=16, samples=SampleSizes(samples, samples), seed=0, lr=lr)
    return prepare(RunConfig(case="mlp", clients=6, train=train, devices="cpu:2",
                             modes=("serial",)))


def retrainer(prep) -> Retrainer:
    return Retrainer(prep.case, prep.config.train, prep.devices[0], prep.plan.sizes,
                     prep.global_for)


def fingerprints(prep, client: int, nudge: float = 0.0, how: str | None = None):
    """Serial's fingerprint of ``client`` in step 0, and one of another computation of it:
    from weights moved in their last bit (``how``) or on data with one sample nudged."""
    cfg, device = prep.config.train, prep.devices[0]
    start = prep.global_for(0)
    with as_serial(device, cfg):
        x, y = build_datasets(prep.case, cfg, [client], prep.plan.sizes, "cpu")[client]
        serial = train_fingerprint(client_trainer(prep.case, cfg, device, client, (x, y)),
                                   client, start)
        if nudge:
            x = x.clone()
            x[0] *= 1 + nudge
        other = train_fingerprint(client_trainer(prep.case, cfg, device, client, (x, y)),
                                  client, last_bit(start, how, 4) if how else start)
    return serial, other


def test_a_correct_client_on_a_chaotic_path_agrees() -> None:
    # lr 0.5, 16 steps: client 5's training amplifies a last-bit difference of its starting
    # weights past the tolerance (no ReLU changes sign: the steps themselves amplify it).
    prep = prepared(0.5, 256)
    serial, flipped = fingerprints(prep, 5, how="mixed")
    diff = relative_diff(flipped, serial)
    assert diff > CPU_TOLERANCE
    verdict = judge(retrainer(prep), [Suspect(0, 5, diff)], {0: serial[None].repeat(6, 0)},
                    lambda step: step)
    assert settled(verdict), verdict
    (client,) = verdict.clients
    assert client.agrees and client.variants["again"] == 0.0
    assert client.spread <= client.allowed / 2 + 1e-12 and diff <= client.allowed
    assert set(client.variants) == {"again", "last-bit-up", "last-bit-down", "last-bit-mixed",
                                    "float64"}  # one core: no other thread count


def test_a_client_on_slightly_other_data_still_differs() -> None:
    prep = prepared(0.05, 64)
    serial, nudged = fingerprints(prep, 3, nudge=0.01)
    diff = relative_diff(nudged, serial)
    assert CPU_TOLERANCE < diff < ADJUDICATED_MAX  # beyond the tolerance, adjudicated
    verdict = judge(retrainer(prep), [Suspect(0, 3, diff)], {0: serial[None].repeat(6, 0)},
                    lambda step: step)
    (client,) = verdict.clients
    assert not client.agrees and not settled(verdict)
    assert client.spread < diff / 100  # correct arithmetic lands far closer


def test_a_left_out_client_is_not_adjudicated_and_differs() -> None:
    prep = prepared(0.05, 64)
    verdict = judge(retrainer(prep), [Suspect(0, 1, 1.0)], {}, lambda step: step)
    assert verdict.clients == () and verdict.left == 1 and not settled(verdict)


def test_a_case_that_trains_itself_keeps_the_plain_tolerance() -> None:
    prep = prepare(RunConfig(case=f"{OWN_TRAIN}:adam_case", clients=2,
                             train=TrainConfig(batch_size=8, samples=SampleSizes(16, 16)),
                             devices="cpu:1", modes=("serial",)))
    verdict = judge(retrainer(prep), [Suspect(0, 0, 2e-3)], {}, lambda step: step)
    assert verdict.unavailable is not None and "trains its clients itself" in verdict.unavailable
    assert verdict.left == 1 and not settled(verdict)


AGREES = ClientAdjudication(9, 3, 3.4e-3, {"again": 0.0, "last-bit-up": 3.4e-3,
                                           "last-bit-down": 2e-6}, 6.8e-3, True)
DIFFERS = ClientAdjudication(2, 1, 1.7e-3, {"again": 0.0, "last-bit-up": 1e-6}, 2e-6, False)


def mode_with(*judged: ClientAdjudication, same: bool) -> ModeResult:
    diffs = [[0.0] * 10 for _ in range(4)]
    for c in judged:
        diffs[c.round][c.client] = c.diff
    worst = max(judged, key=lambda c: c.diff)
    return ModeResult(
        name="vectorized", status="ok", devices=("cpu:0",), round_times_s=(1.0,) * 4,
        same_result=same, worst_client=worst.client, worst_round=worst.round,
        worst_client_diff=worst.diff, max_abs_diff_vs_serial=1e-4,
        rounds=tuple(RoundRecord(i, False, 1.0, client_diffs=tuple(d))
                     for i, d in enumerate(diffs)),
        extra={"tolerance": 1e-3, "adjudication": Adjudication(judged)},
    )


def results_of(mode: ModeResult) -> Results:
    serial = ModeResult(name="serial", status="ok", devices=("cpu:0",),
                        round_times_s=(1.0,) * 4, same_result=True)
    return Results(environment={}, config={"tolerance_used": 1e-3}, modes=(serial, mode))


def test_the_adjudication_is_saved_and_read_back() -> None:
    results = results_of(mode_with(AGREES, DIFFERS, same=False))
    again = from_dict(json.loads(to_json(results)))
    assert again.modes[1].extra.adjudication == results.modes[1].extra.adjudication
    assert again.modes[1].extra.adjudication.clients[0].spread == 3.4e-3
    older = to_dict(results)
    del older["modes"][1]["extra"]["adjudication"]  # a file from before adjudication
    assert from_dict(older).modes[1].extra.adjudication is None


def test_an_adjudicated_client_agrees_and_is_mentioned() -> None:
    found = compute_findings(results_of(mode_with(AGREES, same=True)))
    assert "result-differs" not in [f.code for f in found]
    (f,) = [f for f in found if f.code == "adjudicated"]
    assert f.level == "info"
    en, hint = finding_text(f)
    assert "client 9 in round 3 differed by 0.0034" in en
    assert "up to 0.0034" in en and "a branch flip, not a wrong result" in en
    assert "ReLU or max" in hint
    assert "客户端 9" in finding_text(f, "zh")[0]


def test_a_mode_failing_beside_an_agreeing_client_names_the_one_that_differs() -> None:
    found = compute_findings(results_of(mode_with(AGREES, DIFFERS, same=False)))
    (differs,) = [f for f in found if f.code == "result-differs"]
    assert (differs.facts["client"], differs.facts["round"]) == (2, 1)
    assert differs.facts["diff"] == 1.7e-3


@pytest.mark.slow
def test_a_correct_mode_beyond_the_tolerance_is_adjudicated_the_same() -> None:
    # Found on this AMD EPYC (AVX2): mlp at lr 0.5 and 16 steps, vectorized's batched sums
    # take client 5 of the first round 2e-3 away from serial's, past the 1e-3 tolerance.
    from gpubench.run.harness import compare

    train = TrainConfig(batch_size=16, samples=SampleSizes(256, 256), seed=0, lr=0.5)
    results = compare(RunConfig(case="mlp", clients=6, train=train, devices="cpu:1",
                                warmup=0, rounds=2, modes=("serial", "vectorized"),
                                sample_interval_s=None))
    vec = results.mode("vectorized")
    assert vec is not None and vec.status == "ok", vec and vec.error
    assert vec.worst_client_diff is not None and vec.tolerance is not None
    assert vec.worst_client_diff > vec.tolerance
    adjudication = vec.extra.adjudication
    assert adjudication is not None and settled(adjudication)
    assert vec.same_result is True
    assert any(f.code == "adjudicated" for f in compute_findings(results))

