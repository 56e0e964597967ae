"""scripts/gpu-check.sh without a GPU: its --dry-run plan against a fake nvidia-smi."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "gpu-check.sh"
ONE_DEVICE_CALL_S = 480  # one device call of at most 8 minutes


def _dry_run(tmp_path, gpu_name, **env_extra):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\necho '{gpu_name}'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHON": sys.executable, **env_extra}
    env.pop("GPU_NAME", None)
    env.pop("BUDGET_S", None)
    env.update(env_extra)
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(out)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    runs = [" ".join(shlex.split(line.removeprefix("would run: ")))
            for line in proc.stdout.splitlines() if line.startswith("would run: ")]
    return proc.stdout, runs, out


@pytest.mark.parametrize(("name", "folder"), [
    ("NVIDIA H100 80GB HBM3", "gpu-h100"),
    ("NVIDIA GeForce RTX 4090", "gpu-rtx-4090"),
])
@pytest.mark.parametrize("only", ["0", "1"])
def test_the_plan_fits_one_device_call_and_names_folders_by_model(tmp_path, name, folder, only):
    text, runs, out = _dry_run(tmp_path, name, ONLY_CLIENTS=only)
    planned = re.search(r"planned: (\d+) s of (\d+) s", text)
    assert planned, text
    assert int(planned[1]) <= int(planned[2]) <= ONE_DEVICE_CALL_S
    # the dry run's own accounting: the steps it would run fit the budget too
    shares = [int(s) for s in re.findall(r"\(at most (\d+) s\)", text)]
    assert sum(shares) <= int(planned[2])
    sweeps = [r for r in runs if " sweep " in r]
    assert sweeps and all(f"{out}/reports/{folder}/clients-" in r for r in sweeps)
    faqs = [r for r in runs if " faq " in r]
    assert faqs and all(f"--out {out}/docs/faq/{folder}/clients-" in r for r in faqs)
    assert "gpu-hbm3" not in text and "gpu-4090" not in text


def test_the_most_valuable_steps_come_first(tmp_path):
    text, runs, _ = _dry_run(tmp_path, "NVIDIA H100 80GB HBM3")
    compare = runs[1]  # after the machine and doctor
    for mode in ("serial", "threaded", "multiprocess", "multi-gpu", "vectorized", "streams", "ray"):
        assert mode in compare.split("--modes ")[1].split()[0].split(","), compare
    order = [i for i, r in enumerate(runs) if " compare " in r and "--mps on" in r or "mps_raw.py" in r]
    knee = next(i for i, r in enumerate(runs) if "--case cnn" in r and " sweep " in r)
    assert order and max(order) < knee
    assert "--workers-per-device 1,2,4,8,16" in runs[knee]
    assert not any("--case resnet18" in r for r in runs)  # 16 ResNet-18 workers: not on 24 GB


def test_only_clients_keeps_resnet18_to_what_a_24_gb_card_holds(tmp_path):
    _, runs, _ = _dry_run(tmp_path, "NVIDIA GeForce RTX 4090", ONLY_CLIENTS="1")
    resnet = next(r for r in runs if "--case resnet18" in r)
    assert "--workers-per-device 1,2,4,8 " in resnet
    assert not [r for r in runs if " compare " in r]


def test_every_timeout_has_a_kill_after():
    text = SCRIPT.read_text()
    calls = re.findall(r"^\s*(?:\S+\s+)*?timeout\s+(\S+)", text, re.M)
    assert calls and all(c == "-k" for c in calls), calls


def test_the_mps_timing_keeps_what_it_measured_when_a_client_dies(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import mps_raw
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    report: dict = {"alone": {"wall_s": 1.0}}

    def dies():
        raise mps_raw.ClientFailed("process 12 did not start (exit 1, said '')")

    mps_raw.measure(report, "mps", dies)
    assert report["alone"] == {"wall_s": 1.0} and report["mps"] is None
    assert "did not start" in report["mps_reason"]


def test_gpu_name_sets_the_folder_and_the_sweeps_keep_their_shape(tmp_path):
    _, runs, out = _dry_run(tmp_path, "NVIDIA H200", ONLY_CLIENTS="1", GPU_NAME="h200")
    for case in ("cnn", "resnet18"):
        sweep = next(r for r in runs if " sweep " in r and f"--case {case} " in r)
        for part in ("--devices cuda:0", "--mps on", "--modes multi-gpu,ray",
                     f"--out-dir {out}/reports/gpu-h200/clients-{case}"):
            assert part in sweep, (part, sweep)
        faq = next(r for r in runs if " faq " in r and f"clients-{case}" in r)
        assert f"--clients-sweep {out}/reports/gpu-h200/clients-{case}" in faq
    assert not (out / "gpu-check.tar.gz").exists() and not list(out.glob("*.json"))
