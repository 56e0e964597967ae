"""The CLI: bad input refused before any work (in this process), and in a real subprocess exit
codes, Ctrl-C, results on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from gpubench.config import ConfigError, Partition, SampleSizes
from gpubench.machine.devices import resolve_devices, split_cores
from tests.conftest import CASES, ROOT, cli_in_process, run_cli, spawned_workers, wait_for_training

TINY = ["--case", "mlp", "--clients", "2", "--samples-per-client", "32", "--batch-size", "16",
        "--rounds", "1", "--warmup", "0", "--sample-interval", "0", "--quiet"]

BAD = [
    (["--clients", "0"], "--clients must be >= 1"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--rounds", "0"], "--rounds must be >= 1"),
    (["--modes", "serial,warp-drive"], "unknown mode 'warp-drive'"),
    (["--case", "nosuchcase"], "unknown case 'nosuchcase'"),
    (["--case", "no_such_pkg.mod:CASE"], "cannot import no_such_pkg.mod"),
    (["--devices", "gpu:1"], "--devices must be"),
    (["--devices", "cpu:64"], "asks for 64 CPU slots"),
    (["--devices", "cpu:1,2"], "--devices must be"),
    (["--out", "/proc/gpubench-cannot/x.json"], "cannot write --out"),
    (["--samples-per-client", "many"], "--samples-per-client must be"),
    (["--partition", "dirichlet:-1"], "--partition"),
    (["--clients", "ten"], "invalid int value"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path):
    proc = cli_in_process("compare", *TINY, "--out", str(tmp_path / "r.json"), *argv)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "r.json").exists()


def test_no_cuda_is_a_clear_error_where_there_is_no_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = cli_in_process("compare", *TINY, "--devices", "cuda", "--out", str(tmp_path / "r.json"))
    assert proc.returncode == 2
    assert "no CUDA GPU is visible" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_compare_writes_results_and_prints_the_table(tmp_path):
    out = tmp_path / "deep" / "r.json"
    loud = [a for a in TINY if a != "--quiet"]
    proc = run_cli("compare", *loud, "--modes", "serial,multi-gpu", "--devices", "cpu:1",
                   "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"results: {out}" in proc.stdout
    assert "multi-gpu" in proc.stdout
    data = json.loads(out.read_text())
    assert data["schema_version"] == 2
    assert [m["name"] for m in data["modes"]] == ["serial", "multi-gpu"]
    for key in ("name", "status", "error", "devices", "cold_start_s", "warmup_times_s",
                "round_times_s", "speedup_vs_serial", "max_abs_diff_vs_serial"):
        assert key in data["modes"][1]
    assert data["command"].startswith("gpubench compare")
    assert data["environment"]["torch"]
    # stderr is not a terminal: whole progress lines, each mode's last one among them
    assert "\r" not in proc.stderr and "\x1b[" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("gpubench: ")]
    assert lines[0].startswith("gpubench: serial: starting | 0% | elapsed ")
    assert lines[0].endswith(", time left unknown")
    assert [line.split(":")[1].strip() for line in lines if ": done in " in line] == [
        "serial", "multi-gpu"]
    assert lines[-1].startswith("gpubench: multi-gpu: done in ") and " | 100% | " in lines[-1]


@pytest.mark.slow
def test_a_failed_mode_exits_1_and_the_others_are_written(tmp_path):
    out = tmp_path / "r.json"
    proc = run_cli("compare", *TINY, "--case", f"{CASES}:failing_case", "--clients", "3",
                   "--modes", "serial", "--out", str(out))
    assert proc.returncode == 1
    data = json.loads(out.read_text())
    assert data["modes"][0]["status"] == "failed"
    assert "every label is 3" in data["modes"][0]["error"]


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_stop_every_worker_and_write_what_was_measured(tmp_path, sig, code):
    out = tmp_path / "r.json"
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GPUBENCH_TEST_MARKS": str(marks)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpubench", "compare", "--case", f"{CASES}:slow_case",
         # 15 batches of 50 ms a client: a worker's two clients take 1.5 s once it trains
         "--clients", "4", "--samples-per-client", "120", "--batch-size", "8",
         "--modes", "serial,multi-gpu", "--devices", "cpu:2", "--rounds", "1", "--warmup", "0",
         "--sequential", "--sample-interval", "0", "--quiet", "--out", str(out)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
        # A suite started in the background of a shell hands SIGINT down ignored; a command
        # typed in a terminal gets it as usual, which is what this test is about.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        parent = psutil.Process(proc.pid)
        # Serial trains in the parent first; then multi-gpu's workers start. Interrupt once a
        # worker has begun training its first client: the round cannot have finished.
        wait_for_training(marks, {proc.pid})
        workers: list[psutil.Process] = []
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline:
            workers = spawned_workers(parent)
            time.sleep(0.05)
        assert len(workers) == 2, "multi-gpu workers never started"
        wait_for_training(marks, {w.pid for w in workers})
        if sig == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        else:
            proc.send_signal(signal.SIGTERM)  # what `timeout` and CI runners send
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"workers outlived the signal: {alive}"
    data = json.loads(out.read_text())
    assert data["interrupted"] is True
    modes = {m["name"]: m for m in data["modes"]}
    assert modes["serial"]["status"] == "ok"
    assert modes["multi-gpu"]["status"] == "failed"
    assert "interrupted" in modes["multi-gpu"]["error"]


def test_cases_lists_the_catalogue_with_parameter_counts():
    proc = cli_in_process("cases")
    assert proc.returncode == 0
    for name, params in (("cnn", "136,874"), ("mlp", "109,386"), ("resnet18", "11,173,962")):
        line = next(line for line in proc.stdout.splitlines() if line.startswith(name))
        assert params in line


def test_device_specs_and_core_splitting():
    assert split_cores([0, 1, 2, 3, 4], 2) == [(0, 1, 2), (3, 4)]
    with pytest.raises(ConfigError):
        split_cores([0], 2)
    slots = resolve_devices("cpu:2").devices
    assert [d.id for d in slots] == ["cpu:0", "cpu:1"]
    assert set(slots[0].cores).isdisjoint(slots[1].cores)
    for bad in ("", "gpu", "cuda:a", "cpu:-1", "cuda:0,,1"):
        with pytest.raises(ConfigError):
            resolve_devices(bad)


def test_partition_and_sample_size_parsing():
    assert Partition.parse("dirichlet:0.3") == Partition("dirichlet", 0.3)
    assert str(Partition.parse("iid")) == "iid"
    assert SampleSizes.parse("64..128") == SampleSizes(64, 128)
    for bad in ("dirichlet:0", "dirichlet:x", "zipf"):
        with pytest.raises(ConfigError):
            Partition.parse(bad)
    for bad in ("0", "9..3", "1.5"):
        with pytest.raises(ConfigError):
            SampleSizes.parse(bad)


@pytest.mark.slow
def test_sigterm_stops_a_sweep_with_143_and_what_was_measured_written(tmp_path):
    out_dir = tmp_path / "sweep"
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GPUBENCH_TEST_MARKS": str(marks)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpubench", "sweep", "--case", f"{CASES}:slow_case",
         "--clients", "2", "--samples-per-client", "256", "--batch-size", "8,16",
         "--modes", "serial", "--devices", "cpu:1", "--rounds", "1", "--warmup", "0",
         "--sample-interval", "0", "--quiet", "--out-dir", str(out_dir)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    first = out_dir / "batch_size-8.json"
    try:
        deadline = time.monotonic() + 120
        while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # polls for the first point's file; no timing is assumed
        assert first.exists(), proc.stderr.read() if proc.poll() is not None else "too slow"
        for mark in marks.iterdir():
            mark.unlink()
        wait_for_training(marks, {proc.pid})  # the second point is training now
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert json.loads(first.read_text())["interrupted"] is False
    second = json.loads((out_dir / "batch_size-16.json").read_text())
    assert second["interrupted"] is True
    assert second["modes"][0]["status"] == "failed"
    assert (out_dir / "summary.json").is_file()


def test_run_config_is_what_compare_would_run_and_refuses_bad_options():
    import argparse

    from gpubench.cli import run_config
    from gpubench.commands.arguments import add_run_arguments, config_from_args

    argv = ["--case", "mlp", "--clients", "3", "--batch-size", "16", "--devices", "cpu:1"]
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    expected = config_from_args(parser.parse_args(argv))
    assert run_config(argv) == expected
    assert (expected.clients, expected.train.batch_size) == (3, 16)
    with pytest.raises(ConfigError, match="invalid int value"):
        run_config(["--clients", "ten"])
    with pytest.raises(ConfigError, match="unrecognized arguments: --out"):
        run_config(["--out", "x.json"])
