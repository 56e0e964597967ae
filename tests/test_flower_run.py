"""The flower mode through ``flwr run``: a private SuperLink per run (ports and FLWR_HOME),
the federation configuration, Flower's version, and real runs of the CLI with Flower's
``run_simulation`` removed, finished or interrupted, leaving no Flower or Ray process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from gpubench.findings.scaling import round_steps
from gpubench.modes.base import ModeFailure
from gpubench.modes.flower_superlink import (
    LocalSuperLink,
    SuperLinkPlace,
    check_flwr_version,
    config_arg,
    write_app,
)
from gpubench.results import read_results
from tests.conftest import ROOT, of_this_session

pytestmark = pytest.mark.ray

NO_RUN_SIMULATION = Path(__file__).resolve().parent / "no_run_simulation"
FLOWER_NAMES = ("flower-superlink", "flower-superexec", "flwr-simulation", "flwr-serverapp",
                "flower-supernode", "raylet", "gcs_server", "ray::")


def test_two_runs_get_their_own_superlink_home_and_ports(tmp_path):
    a = SuperLinkPlace.allocate(tmp_path / "a")
    b = SuperLinkPlace.allocate(tmp_path / "b")
    assert a.home != b.home and a.home.is_dir() and b.home.is_dir()
    assert len({a.http_port, a.control_port, b.http_port, b.control_port}) == 4
    for place in (a, b):
        env = place.environment()
        assert env["FLWR_HOME"] == str(place.home)
        assert env["FLWR_LOCAL_SUPERLINK_HTTP_API_PORT"] == str(place.http_port)
        assert env["FLWR_LOCAL_CONTROL_API_PORT"] == str(place.control_port)
        assert env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] == "1"
        assert env["FLWR_TELEMETRY_ENABLED"] == "0"
        command = place.superlink_command()
        assert command[command.index("--port") + 1] == str(place.http_port)
        assert str(place.home) in command[command.index("--database") + 1]


def test_an_old_flower_gets_one_line_naming_the_version_it_needs():
    with pytest.raises(ModeFailure, match=r"flwr 1\.21\.0 cannot run the flower mode.*>= 1\.27"):
        check_flwr_version("1.21.0")
    check_flwr_version("1.27.0")
    check_flwr_version("1.42.0rc1")


def test_configs_are_typed_as_flwr_parses_them(tmp_path):
    from flwr.common.config import parse_config_args

    values = {"num-supernodes": 4, "client-resources-num-gpus": 0.25, "log": False,
              "gpubench-key": str(tmp_path / "a b" / "key")}
    assert dict(parse_config_args([config_arg(values)])) == values
    app = write_app(tmp_path / "app")
    assert 'serverapp = "gpubench_flower_app:server"' in (app / "pyproject.toml").read_text()


def flower_processes(before: set[int] = frozenset()) -> list[str]:  # type: ignore[assignment]
    found = []
    for p in psutil.process_iter():
        try:
            text = " ".join([p.name(), *p.cmdline()])
            if p.pid not in before and of_this_session(p) and any(n in text for n in FLOWER_NAMES):
                found.append(f"{p.pid} {p.name()}")
        except psutil.Error:
            continue
    return found


def no_flower_left(before: set[int], wait_s: float = 10.0) -> list[str]:
    deadline = time.monotonic() + wait_s
    while (left := flower_processes(before)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _pids() -> set[int]:
    return {int(p.split()[0]) for p in flower_processes()}


# Flower alone (no serial reference to wait for), small clients, rounds enough to be inside one.
INTERRUPTED = ["compare", "--clients", "4", "--batch-size", "32", "--samples-per-client", "32",
               "--devices", "cpu:2", "--modes", "flower", "--rounds", "50"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(NO_RUN_SIMULATION), str(ROOT)])}


# The quickstart example's one-liner, with flower and multi-gpu in one run (one serial
# reference for both): the app runs in a worker process (multiprocess's workers are
# multi-gpu's) and in a Flower actor, one of each on one slot (two of each, on two slots, are
# in tests/test_ray_and_flower.py); the other apps under the in-process modes are in
# tests/test_flower_app.py.
QUICKSTART = ["compare", "--case", "flower:examples/flower-quickstart/app.py:app",
              "--initial-model", "examples/flower-quickstart/task.py:Net",
              "--run-config", "batch-size=8 local-epochs=1 dataset-size=160",
              "--train-config", "lr=0.01", "--clients", "4", "--devices", "cpu:1",
              "--modes", "serial,multi-gpu,flower", "--warmup", "0", "--rounds", "1",
              "--sequential", "-q"]


@pytest.mark.slow
def test_the_quickstart_through_flwr_run_without_run_simulation(tmp_path):
    before = _pids()
    proc = subprocess.run([sys.executable, "-m", "gpubench", *QUICKSTART, "--out",
                           str(tmp_path / "r.json")], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env=_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "deprecat" not in proc.stderr.lower() and "warning" not in proc.stderr.lower()
    written = read_results(tmp_path / "r.json")
    assert [m.name for m in written.modes] == ["serial", "multi-gpu", "flower"]
    assert all(m.status == "ok" for m in written.modes), [m.error for m in written.modes]
    for name in ("multi-gpu", "flower"):  # the app in worker processes
        assert written.mode(name).same_result is True, name  # type: ignore[union-attr]
    assert all(sum(c.phases.values()) == pytest.approx(c.end_s - c.start_s, rel=0.05)
               for m in written.modes for r in m.rounds for c in r.clients)
    assert written.config["case"].startswith("flower:examples/flower-quickstart/app.py:app")
    assert list(written.config["samples"]) == [32, 32, 32, 32]  # the app's num-examples
    flower = written.mode("flower")
    assert flower is not None
    # its rounds come in Flower's 0.1 s polling steps: the findings say so beside its row
    # (the rule itself: on a busy machine the findings leave the disturbed modes' speed out)
    steps = round_steps(written)
    assert [f.facts["mode"] for f in steps] == ["flower"]
    # each client's waiting for a CPU, read in its actor, reaches the results
    assert all(c.wait_s is not None for r in flower.rounds for c in r.clients)
    engine = flower.extra.engine or {}
    assert engine["engine"] == "flwr run" and engine["flwr"]
    assert engine["federation_config"]["num-supernodes"] == 4
    assert {"superlink_s", "submit_s", "to_server_app_s", "to_ready_s"} <= set(
        flower.extra.startup_s or {})
    assert not no_flower_left(before)


@pytest.mark.slow
def test_ctrl_c_in_a_flower_round_leaves_no_flower_or_ray_process(tmp_path):
    before = _pids()
    proc = subprocess.Popen([sys.executable, "-m", "gpubench", *INTERRUPTED,
                             "--out", str(tmp_path / "r.json")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=_env())
    assert proc.stderr is not None
    seen = []
    try:
        for line in proc.stderr:  # the progress display: wait for flower's measured rounds
            seen.append(line)
            if "flower: round" in line or "flower: warm-up" in line:
                break
        assert any("flower: round" in x or "flower: warm-up" in x for x in seen), "".join(seen)
        time.sleep(0.1)  # inside a round
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert not no_flower_left(before), "Flower or Ray processes outlived Ctrl-C"


def test_a_private_superlink_stops_with_everything_under_it(tmp_path):
    pytest.importorskip("flwr")
    link = LocalSuperLink(SuperLinkPlace.allocate(tmp_path), {})
    link.start()
    try:
        assert link.alive()
        other = SuperLinkPlace.allocate(tmp_path / "other")
        assert other.http_port != link.place.http_port
    finally:
        pids = [p.pid for p in link.descendants()]
        link.stop()
    assert pids and not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                            for p in pids)
