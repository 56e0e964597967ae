"""Pinning: a CPU slot's cores for every thread of an in-process mode, and back afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from gpubench.machine.devices import Device
from gpubench.machine.isolation import pin_in_process, process_threads, worker_environment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

needs_two_cores = pytest.mark.skipif(
    not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
    reason="pinning to a smaller set of cores needs Linux and two usable cores",
)

# Runs in a fresh process: torch's OpenMP team is started before anything is pinned, as in
# the parent of a real run (the command line imports torch and runs rounds of other modes).
_PROBE = textwrap.dedent(
    """
    import json, os, threading
    import torch
    from gpubench.machine.devices import Device
    from gpubench.machine.isolation import pin_in_process, pinned_thread, process_threads

    def masks():
        return {t: sorted(os.sched_getaffinity(t)) for t in process_threads()}

    cores = sorted(os.sched_getaffinity(0))
    torch.set_num_threads(len(cores))
    x = torch.randn(256, 256)
    for _ in range(20):
        x = torch.tanh(x @ x)  # OpenMP starts its team here, on every core
    stop = threading.Event()
    early = threading.Thread(target=stop.wait)
    early.start()
    spare = threading.Thread(target=stop.wait)  # e.g. a sampler: not the mode's work
    spare.start()
    before = masks()
    slot = Device("cpu:0", "cpu", 0, "CPU slot 0", cores=(cores[0],))
    with pinned_thread(slot):
        calling_thread_only = masks()
    with pin_in_process(slot, spare=(spare.native_id,)):
        entered = masks()
        started = threading.Event()
        late = threading.Thread(target=lambda: (started.set(), stop.wait()))
        late.start()
        started.wait()
        for _ in range(20):
            x = torch.tanh(x @ x)
        working = masks()
    after = masks()
    stop.set()
    for t in (early, spare, late):
        t.join()
    print(json.dumps({
        "main": threading.get_native_id(), "cores": cores, "before": before,
        "calling_thread_only": calling_thread_only, "entered": entered, "working": working,
        "after": after, "late": late.native_id, "spare": spare.native_id,
    }))
    """
)


def _probe() -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {k: ({int(t): m for t, m in v.items()} if isinstance(v, dict) else v) for k, v in out.items()}


@needs_two_cores
def test_every_thread_of_the_process_runs_on_the_slot_inside_and_gets_its_cores_back() -> None:
    p = _probe()
    cores, main, slot, spare = p["cores"], p["main"], [p["cores"][0]], p["spare"]
    # The process has threads besides the main one and the Python threads (OpenMP's team), and
    # pinning the calling thread alone leaves them on every core: the fault being fixed.
    assert len(p["before"]) >= 4
    assert p["calling_thread_only"][main] == slot
    assert any(m == cores for t, m in p["calling_thread_only"].items() if t != main)
    # Inside: every thread, those from before and those started inside, on the slot only;
    # the spare thread keeps its cores.
    assert p["entered"][spare] == p["working"][spare] == cores
    assert all(m == slot for t, m in p["entered"].items() if t != spare)
    assert p["late"] in p["working"]
    assert all(m == slot for t, m in p["working"].items() if t != spare)
    # After: each thread from before has its own affinity back; threads started inside get
    # the one the calling thread had.
    for tid, mask in p["before"].items():
        if tid in p["after"]:
            assert p["after"][tid] == mask, tid
    assert all(m == cores for t, m in p["after"].items() if t not in p["before"])


def test_a_gpu_or_a_device_without_cores_pins_nothing() -> None:
    before = {t: os.sched_getaffinity(t) for t in process_threads()} if process_threads() else {}
    gpu = Device("cuda:0", "cuda", 0, "GPU 0")
    with pin_in_process(gpu):
        inside = {t: os.sched_getaffinity(t) for t in process_threads()}
    assert all(inside[t] == m for t, m in before.items() if t in inside)


def test_process_threads_lists_this_thread() -> None:
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("no /proc")
    import threading

    assert threading.get_native_id() in process_threads()


def test_worker_environment_sizes_threads_to_the_slot_and_binds_one_gpu() -> None:
    slot = Device("cpu:1", "cpu", 1, "CPU slot 1", cores=(2, 3, 4))
    assert worker_environment(slot) == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    gpu = Device("cuda:1", "cuda", 1, "GPU 1", visible_as="GPU-abc")
    assert worker_environment(gpu) == {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": "GPU-abc",
    }
    unnamed = Device("cuda:2", "cuda", 2, "GPU 2")
    assert worker_environment(unnamed)["CUDA_VISIBLE_DEVICES"] == "2"


def test_threaded_client_threads_end_with_their_round() -> None:
    """Threads kept between rounds would each keep an OpenMP team, and a process with more
    OpenMP threads than cores stops libgomp spinning: serial, interleaved with threaded in
    the same process, would run slower than alone (0.17 s -> 0.27-0.34 s measured)."""
    import threading

    from gpubench.modes.inprocess import CLIENT_THREADS
    from gpubench.run.prepare import open_mode
    from tests.conftest import run_config

    config = run_config(clients=4, devices="cpu:1", modes=("threaded",), batch_size=16,
                        samples=32, workers=2)
    seen: set[str] = set()
    before = {t.ident for t in threading.enumerate()}  # e.g. a hung app's thread of a test
    with open_mode(config, "threaded") as session:
        real = session.mode._one  # type: ignore[attr-defined]

        def spy(client, fingerprints):
            seen.add(threading.current_thread().name)
            return real(client, fingerprints)

        session.mode._one = spy  # type: ignore[attr-defined]
        session.run_round()
        left = [t.name for t in threading.enumerate()
                if t.ident not in before and t.name.startswith(CLIENT_THREADS)]
    assert seen and all(name.startswith(CLIENT_THREADS) for name in seen)
    assert left == [], f"client threads outlived their round: {left}"
