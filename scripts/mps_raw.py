"""Small-kernel processes on one GPU: one alone, four time-sliced, four under a private MPS
daemon (for scripts/gpu-check.sh). Each measurement is kept as it is made: a client that dies
at start under MPS, or a daemon that cannot start, is recorded with its reason beside what was
already measured, and the file is written however the script ends.

    python scripts/mps_raw.py OUT.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from gpubench.machine.devices import Device, resolve_devices
from gpubench.modes import mps

WORK = r"""
import sys, time, torch
x = torch.randn(512, 512, device="cuda"); w = torch.randn(512, 512, device="cuda") / 32
torch.cuda.synchronize(); print("ready", flush=True); sys.stdin.readline()
t = time.perf_counter()
for _ in range(20000):
    x = torch.tanh(x @ w)
torch.cuda.synchronize(); print(time.perf_counter() - t, flush=True)
"""
START_TIMEOUT_S = 60


class ClientFailed(RuntimeError):
    """A measuring process did not start or did not answer."""


def run(device: Device, n: int, daemon: mps.MpsDaemon | None = None) -> dict[str, Any]:
    env = {**os.environ, **(daemon.worker_environment(device) if daemon else {})}
    procs = [subprocess.Popen([sys.executable, "-c", WORK], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(n)]
    try:
        for p in procs:
            line = p.stdout.readline().strip() if p.stdout else ""
            if line != "ready":
                raise ClientFailed(f"process {p.pid} did not start (exit {p.poll()}, said {line!r})")
        if daemon:
            daemon.check_attached({p.pid: device.id for p in procs})
        t = time.perf_counter()
        for p in procs:
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        each = [float(p.stdout.readline()) for p in procs if p.stdout]
        return {"processes": n, "wall_s": round(time.perf_counter() - t, 4), "each_s": each}
    finally:
        for p in procs:
            if p.stdin:
                p.stdin.close()
            try:
                p.wait(START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()


def measure(report: dict[str, Any], key: str, what: Any) -> None:
    """report[key] = what(), or None with report[key + '_reason']."""
    try:
        report[key] = what()
    except (ClientFailed, ValueError, OSError, mps.MpsUnavailable, mps.MpsAttachError) as exc:
        report[key] = None
        report[f"{key}_reason"] = f"{type(exc).__name__}: {exc}"


def under_mps(device: Device) -> dict[str, Any]:
    with mps.mps_daemon([device]) as daemon:
        return run(device, 4, daemon)


def main(path: str) -> int:
    device = resolve_devices("cuda").devices[0]
    report: dict[str, Any] = {"device": device.to_dict(),
                              "work": "20000 x (512x512 matmul + tanh) per process"}
    try:
        measure(report, "alone", lambda: run(device, 1))
        measure(report, "time_sliced", lambda: run(device, 4))
        measure(report, "mps", lambda: under_mps(device))
        if report.get("time_sliced") and report.get("mps"):
            report["mps_over_time_sliced"] = round(
                report["time_sliced"]["wall_s"] / report["mps"]["wall_s"], 3)
    finally:
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
    print(json.dumps({k: v for k, v in report.items() if k != "device"}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
