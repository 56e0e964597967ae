"""``predict``: scheduling measured client times onto K devices, from hand-made results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpubench.errors import UsageError
from gpubench.predict import predict, schedule
from gpubench.results import ClientTiming, ModeResult, Results, RoundRecord, write_results
from tests.conftest import cli_in_process


@pytest.fixture
def run_cli():
    return cli_in_process


def _round(index: int, time_s: float, train: list[float], workers: list[int] | None = None) -> RoundRecord:
    clients = tuple(
        ClientTiming(
            client=c,
            device=f"cpu:{(workers or [0] * len(train))[c]}",
            worker=(workers or [0] * len(train))[c],
            samples=100,
            load_s=0.0,
            train_s=t,
            write_s=0.0,
            start_s=0.0,
            end_s=t,
        )
        for c, t in enumerate(train)
    )
    return RoundRecord(index, False, time_s, clients)


def _results(
    train: list[float],
    serial_round: float,
    *,
    assign: str = "round-robin",
    samples: list[int] | None = None,
    multigpu: ModeResult | None = None,
) -> Results:
    serial = ModeResult(
        name="serial",
        status="ok",
        devices=("cpu:0",),
        round_times_s=(serial_round, serial_round),
        speedup_vs_serial=1.0,
        rounds=(_round(0, serial_round, train), _round(1, serial_round, train)),
    )
    modes = (serial,) if multigpu is None else (serial, multigpu)
    config = {"assign": assign, "clients": len(train), "local_epochs": 1,
              "samples": samples or [100] * len(train)}
    return Results(environment={}, config=config, modes=modes)


# --- scheduling -------------------------------------------------------------------------------


def test_round_robin_vs_balanced_on_uneven_clients() -> None:
    times = [4.0, 1.0, 1.0, 1.0, 1.0]
    work = [400.0, 100.0, 100.0, 100.0, 100.0]
    rr = schedule(times, work, 2, "round-robin")
    assert [d.clients for d in rr] == [(0, 2, 4), (1, 3)]
    assert [d.busy_s for d in rr] == [6.0, 2.0]
    balanced = schedule(times, work, 2, "balanced")
    assert [d.clients for d in balanced] == [(0,), (1, 2, 3, 4)]
    assert [d.busy_s for d in balanced] == [4.0, 4.0]


def test_balanced_schedules_by_the_runs_work_estimate_not_by_time() -> None:
    # The run decides on samples; a client slower than its samples suggest stays where the
    # run would have put it.
    loads = schedule([1.0, 5.0, 1.0], [300.0, 100.0, 100.0], 2, "balanced")
    assert [d.clients for d in loads] == [(0,), (1, 2)]
    assert [d.busy_s for d in loads] == [1.0, 6.0]


def test_more_devices_than_clients_leaves_devices_idle() -> None:
    loads = schedule([1.0, 2.0], [1.0, 1.0], 4, "round-robin")
    assert [d.busy_s for d in loads] == [1.0, 2.0, 0, 0]


# --- the prediction -----------------------------------------------------------------------------


def test_prediction_from_serial_alone_adds_serials_fixed_cost() -> None:
    results = _results([1.0, 1.0, 1.0, 1.0], serial_round=4.4)
    p = predict(results, 2)
    assert p.fixed_from == "serial"
    assert p.fixed_s == pytest.approx(0.4)
    assert p.per_client_overhead_s == 0.0
    assert p.predicted_round_s == pytest.approx(2.4)
    assert p.predicted_speedup == pytest.approx(4.4 / 2.4)
    assert p.serial_only_speedup == pytest.approx(p.predicted_speedup)
    assert p.measured_speedup is None and p.relative_error is None
    one = predict(results, 1)
    assert one.predicted_round_s == pytest.approx(4.4)


def test_policy_comes_from_the_run_and_can_be_overridden() -> None:
    train = [4.0, 1.0, 1.0, 1.0, 1.0]
    samples = [400, 100, 100, 100, 100]
    results = _results(train, serial_round=8.0, assign="balanced", samples=samples)
    assert predict(results, 2).predicted_round_s == pytest.approx(4.0)
    assert predict(results, 2, "round-robin").predicted_round_s == pytest.approx(6.0)


def test_multigpu_result_gives_overheads_and_the_measured_speedup() -> None:
    train = [1.0, 1.0, 1.0, 1.0]
    mg_train = [1.1, 1.1, 1.1, 1.1]  # 0.1 s more per client in a worker process
    mg_round = _round(0, 2.5, mg_train, workers=[0, 1, 0, 1])  # 2.2 s busy + 0.3 s fixed
    mg = ModeResult(
        name="multi-gpu",
        status="ok",
        devices=("cpu:0", "cpu:1"),
        round_times_s=(2.5,),
        speedup_vs_serial=4.2 / 2.5,
        rounds=(mg_round,),
    )
    p = predict(_results(train, serial_round=4.2, multigpu=mg), 2)
    assert p.fixed_from == "multi-gpu"
    assert p.per_client_overhead_s == pytest.approx(0.1)
    assert p.fixed_s == pytest.approx(0.3)
    assert p.predicted_round_s == pytest.approx(2.5)
    assert p.measured_speedup == pytest.approx(4.2 / 2.5)
    assert p.relative_error == pytest.approx(0.0, abs=1e-9)
    assert p.serial_only_speedup == pytest.approx(4.2 / 2.2)
    d = p.to_dict()
    assert d["predicted_speedup"] == pytest.approx(4.2 / 2.5)
    assert [x["clients"] for x in d["loads"]] == [[0, 2], [1, 3]]
    # Measured on 2 devices: nothing to compare a 4-device prediction with.
    assert predict(_results(train, serial_round=4.2, multigpu=mg), 4).measured_speedup is None


def test_bad_input_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--devices must be >= 1"):
        predict(_results([1.0], 1.0), 0)
    no_serial = Results(environment={}, config={}, modes=(ModeResult("multi-gpu", "ok"),))
    with pytest.raises(UsageError, match="no measured serial"):
        predict(no_serial, 2)


# --- the command --------------------------------------------------------------------------------


@pytest.fixture
def results_file(tmp_path: Path) -> Path:
    return write_results(_results([1.0, 2.0, 3.0], serial_round=6.3), tmp_path / "r.json")


def test_cli_json(results_file: Path, run_cli) -> None:
    done = run_cli("predict", str(results_file), "--devices", "2", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["predicted_round_s"] == pytest.approx(4.3)
    assert data["predicted_speedup"] == pytest.approx(6.3 / 4.3)
    assert [d["busy_s"] for d in data["loads"]] == [4.0, 2.0]


def test_cli_text(results_file: Path, run_cli) -> None:
    done = run_cli("predict", str(results_file), "--devices", "3")
    assert done.returncode == 0, done.stderr
    assert "speedup 1.91x" in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--devices", "0"],
        ["--devices", "-1"],
        ["--devices", "two"],
        [],
    ],
)
def test_cli_bad_devices_exit_2(results_file: Path, args: list[str], run_cli) -> None:
    done = run_cli("predict", str(results_file), *args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_cli_file_without_serial_exit_2(tmp_path: Path, run_cli) -> None:
    path = write_results(
        Results(environment={}, config={}, modes=(ModeResult("multi-gpu", "ok"),)),
        tmp_path / "no_serial.json",
    )
    for target in (str(path), str(tmp_path / "missing.json")):
        done = run_cli("predict", target, "--devices", "2")
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
