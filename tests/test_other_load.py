"""Other programs' load: own CPU time per slot from the run's process tree, the rest of a
slot's busy time as other load, the heaviest other processes named; on GPUs, NVML's processes
outside the tree. Fakes for the arithmetic, a real busy process for the whole path."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest

from gpubench.machine.devices import Device
from gpubench.monitor import Sampler, create_sampler, nvml
from gpubench.monitor.host import HostProbe
from gpubench.monitor.other_load import OtherLoad, OwnProcesses, ProcStat, parse_stat, read_stat
from gpubench.monitor.timeline import Snapshot, mode_other_load, span_other_load
from gpubench.results import PHASE_ROUND
from tests.fake_nvml import FakeGpu, FakeNvmlLib, install

TCK = os.sysconf("SC_CLK_TCK")


def stat_line(pid: int, name: str, ticks: int, core: int, start: int = 0) -> str:
    # fields 3.. : state, then 10 fields, utime (14), stime (15), ..., starttime (22), ...,
    # processor (39)
    rest = ["S"] + ["0"] * 10 + [str(ticks), "0"] + ["0"] * 6 + [str(start)]
    rest += ["0"] * (36 - len(rest)) + [str(core)] + ["0"] * 13
    return f"{pid} ({name}) " + " ".join(rest)


def test_parse_stat_takes_names_with_spaces_and_parentheses() -> None:
    got = parse_stat(stat_line(7, "my (odd) prog", 3 * TCK, 1, start=55))
    assert got == ProcStat("my (odd) prog", 3.0, 1, 55)
    real = read_stat(f"/proc/{os.getpid()}/stat")
    assert real is not None and real.cpu_s > 0 and real.core in os.sched_getaffinity(0) | {
        real.core}


class FakeProc:
    """A fake /proc: per pid its threads' (cpu seconds, core); a process's own total also
    counts threads that ended (``ended_s``)."""

    def __init__(self) -> None:
        self.threads: dict[int, dict[int, tuple[float, int]]] = {}
        self.ended_s: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.start: dict[int, int] = {}
        self.pinned: dict[int, set[int]] = {}  # pid -> its allowed cores (else all)
        self.reaped: dict[int, float] = {}  # pid -> its reaped children's cpu seconds
        self.ppid: dict[int, int] = {}

    def affinity(self, pid: int) -> set[int]:
        return self.pinned.get(pid, {0, 1})

    def stat(self, path: str) -> ProcStat | None:
        parts = path.split("/")
        pid = int(parts[2])
        if pid not in self.threads:
            return None
        if "task" in parts:
            cpu, core = self.threads[pid][int(parts[4])]
            return ProcStat("t", cpu, core, 0)
        ts = self.threads[pid]
        total = sum(c for c, _ in ts.values()) + self.ended_s.get(pid, 0.0)
        last = next(iter(ts.values()))[1] if ts else 0
        return ProcStat(self.names.get(pid, "p"), total, last, self.start.get(pid, 0),
                        self.reaped.get(pid, 0.0), self.ppid.get(pid, 0))

    def tids(self, pid: int) -> list[int]:
        return list(self.threads.get(pid, {}))


def load(fake: FakeProc, own: set[int], now: list[float]) -> OtherLoad:
    tree = OwnProcesses(root=min(own), children=lambda _: sorted(own), clock=lambda: now[0])
    return OtherLoad({"cpu:0": (0,), "cpu:1": (1,)}, tree, stat=fake.stat,
                     list_pids=lambda: sorted(fake.threads), threads=fake.tids,
                     clock=lambda: now[0], wall=lambda: now[0], affinity=fake.affinity)


def test_own_time_goes_to_the_slot_each_thread_ran_on() -> None:
    fake, now = FakeProc(), [1000.0]
    fake.threads[10] = {10: (1.0, 0), 11: (5.0, 1)}  # the parent: a thread per slot
    fake.threads[20] = {20: (2.0, 1)}  # a worker on slot 1
    other = load(fake, {10, 20}, now)
    assert other.own_cpu_s() == {"cpu:0": 0.0, "cpu:1": 0.0}  # from now on
    fake.threads[10] = {10: (1.3, 0), 11: (5.2, 1)}
    fake.threads[20] = {20: (2.5, 1)}
    fake.ended_s[20] = 0.1  # a thread of the worker ended: its time goes to its last core
    got = other.own_cpu_s()
    assert got["cpu:0"] == pytest.approx(0.3) and got["cpu:1"] == pytest.approx(0.8)


def test_a_worker_pinned_to_one_slot_counts_there_whole() -> None:
    fake, now = FakeProc(), [1000.0]
    fake.threads[20] = {20: (2.0, 1), 21: (1.0, 0)}  # a thread's last core is stale
    fake.pinned[20] = {1}
    other = load(fake, {20}, now)
    other.own_cpu_s()
    fake.threads[20] = {20: (2.5, 1), 21: (1.25, 0)}
    assert other.own_cpu_s() == {"cpu:0": 0.0, "cpu:1": pytest.approx(0.75)}


def test_children_that_came_and_went_between_reads_count_through_their_parent() -> None:
    fake, now = FakeProc(), [1000.0]
    fake.threads[20] = {20: (2.0, 1)}  # a worker pinned to slot 1
    fake.pinned[20] = {1}
    fake.threads[30] = {30: (1.0, 1)}  # a loader worker of it, seen alive
    fake.pinned[30], fake.ppid[30] = {1}, 20
    own = {20, 30}
    other = load(fake, own, now)
    other.own_cpu_s()
    fake.threads[30] = {30: (1.5, 1)}  # it ran 0.5 s more
    assert other.own_cpu_s()["cpu:1"] == pytest.approx(0.5)
    # It ended and was reaped (its 1.5 s, seen), and two unseen ones came and went (0.7 s):
    del fake.threads[30]
    own.discard(30)
    other.own._at = None  # the tree is listed again
    fake.reaped[20] = 1.5 + 0.7
    assert other.own_cpu_s() == {"cpu:0": 0.0, "cpu:1": pytest.approx(0.7)}
    # An unpinned parent's unseen children: spread over the slots its threads used.
    fake.threads[10] = {10: (1.0, 0), 11: (1.0, 1)}
    own.add(10)
    other.own._at = None
    other.own_cpu_s()
    fake.threads[10] = {10: (1.3, 0), 11: (1.1, 1)}
    fake.reaped[10] = 0.4
    got = other.own_cpu_s()
    assert got["cpu:0"] == pytest.approx(0.3 + 0.3) and got["cpu:1"] == pytest.approx(0.1 + 0.1)


def test_a_process_started_during_the_run_counts_from_its_start_when_found_late() -> None:
    fake, now = FakeProc(), [1000.0]
    fake.threads[10] = {10: (1.0, 0)}
    own = {10}
    other = load(fake, own, now)
    other._boot = 0.0
    other.own_cpu_s()
    now[0] += 1.0
    fake.threads[30] = {30: (0.4, 0)}  # a loader worker started inside the round
    fake.start[30] = int(1000.5 * TCK)
    fake.threads[31] = {31: (9.0, 0)}  # a process that was there before: from now on
    fake.start[31] = int(10 * TCK)
    own |= {30, 31}
    other.own._at = None  # the tree is listed again
    assert other.own_cpu_s()["cpu:0"] == pytest.approx(0.4)
    # one that started two reads ago and was listed only now: all of its time, not from now
    now[0] += 1.0
    other.own_cpu_s()
    now[0] += 1.0
    fake.threads[32] = {32: (0.9, 0)}
    fake.start[32] = int(1001.5 * TCK)
    own.add(32)
    other.own._at = None
    assert other.own_cpu_s()["cpu:0"] == pytest.approx(0.9)


def test_other_load_is_busy_time_less_own_time_signed_per_window() -> None:
    other = load(FakeProc(), {1}, [0.0])
    got = other.other_pct({"cpu:0": 100.0, "cpu:1": 30.0}, {"cpu:0": 0.05, "cpu:1": 0.05}, 0.1)
    assert got == {"cpu:0": 50.0, "cpu:1": -20.0}  # signed: a mean over windows is clamped
    assert other.other_pct({"cpu:0": None}, {}, 0.1)["cpu:0"] is None


def test_a_mean_over_windows_is_clamped_not_each_window() -> None:
    """Windows scatter both ways around a quiet slot's 0: clamping each would read ~+10%."""
    quiet, busy = [-12.0, 9.0, -10.0, 11.0], [40.0, -5.0, 55.0, 30.0]
    spans = [{"mode": "a", "phase": PHASE_ROUND, "round": 0, "start_s": 0.0, "end_s": 1.0},
             {"mode": "a", "phase": PHASE_ROUND, "round": 1, "start_s": 1.0, "end_s": 2.0}]
    t = [0.2, 0.4, 0.6, 0.8, 1.2, 1.4, 1.6, 1.8]
    snap = Snapshot(spans=spans, t=t, span=[0] * 4 + [1] * 4,
                    cols={"other_util": {"cpu:0": quiet + busy}}, procs=[{}] * 8)
    assert span_other_load(snap, 0, ["cpu:0"]) == {"cpu:0": 0.0}
    assert span_other_load(snap, 1, ["cpu:0"]) == {"cpu:0": 30.0}
    assert mode_other_load(snap, "a", ["cpu:0"]).pct == {"cpu:0": pytest.approx(14.8, abs=0.1)}


def test_the_heaviest_other_processes_are_named_per_slot_not_our_own() -> None:
    fake, now = FakeProc(), [1000.0]
    fake.threads = {10: {10: (1.0, 1)}, 99: {99: (1.0, 1)}, 98: {98: (1.0, 0)}}
    fake.names = {99: "busyloop", 98: "sshd"}
    other = load(fake, {10}, now)
    assert other.name_others({"cpu:1": 0.0}) == {}  # the first scan remembers
    now[0] += 2.0
    fake.threads = {10: {10: (3.0, 1)}, 99: {99: (2.9, 1)}, 98: {98: (1.02, 0)}}
    assert other.name_others({"cpu:1": 2.0}) == {}  # under NAME_ABOVE_PCT: no scan
    named = other.name_others({"cpu:1": 95.0})
    assert [(p.pid, p.name, p.pct) for p in named["cpu:1"]] == [(99, "busyloop", 95.0)]
    assert [p.pid for p in named["cpu:0"]] == [98]
    assert other.name_others({"cpu:1": 95.0}) == {}  # at most once a second


def test_host_probe_reports_other_load_and_names_through_the_sampler() -> None:
    fake, now = FakeProc(), [1000.0]
    fake.threads = {os.getpid(): {1: (0.0, 0)}, 99: {99: (0.0, 1)}}
    fake.names = {99: "busyloop"}
    other = load(fake, {os.getpid()}, now)
    T = namedtuple("T", "user nice system idle")
    per_core = [[T(0, 0, 0, 0), T(0, 0, 0, 0)]]
    probe = HostProbe([Device(id="cpu:0", kind="cpu", index=0, name="s0", cores=(0,)),
                       Device(id="cpu:1", kind="cpu", index=1, name="s1", cores=(1,))],
                      cpu_times=lambda: per_core[0], other=other)
    probe._clock = lambda: now[0]
    clock = [0.0]
    sampler = Sampler(("cpu:0", "cpu:1"), 0.1, probe, clock=lambda: clock[0])
    sampler.start(background=False)
    sampler.sample()
    sampler.mark("multi-gpu", PHASE_ROUND, 0)
    for step in range(1, 6):
        now[0] += 0.2
        clock[0] += 0.2
        # slot 0: busy with our own thread; slot 1: busy with pid 99
        fake.threads[os.getpid()] = {1: (0.2 * step, 0)}
        fake.threads[99] = {99: (0.2 * step, 1)}
        per_core[0] = [T(20 * step, 0, 0, 0), T(20 * step, 0, 0, 0)]
        if step == 3:
            other._scan_at = now[0] - 2  # a scan is due
        sampler.sample()
    sampler.mark(None, "between", None)
    stats = sampler.mode_other_load("multi-gpu", ("cpu:0", "cpu:1"))
    assert stats.pct["cpu:0"] == pytest.approx(0.0, abs=1.0)
    assert stats.pct["cpu:1"] == pytest.approx(100.0, abs=1.0)
    assert [(p.pid, p.name, p.device) for p in stats.processes] == [(99, "busyloop", "cpu:1")]
    section = sampler.results_section()
    assert "other_util" in section["timeline"] and section["other_processes"][0]["pid"] == 99
    assert "other programs' load" in section["fields"]["other_util"]


# --- GPUs: NVML's processes outside the run ------------------------------------------------

UUID = "GPU-11111111-2222-3333-4444-555555555555"


@pytest.fixture
def gpu_lib(monkeypatch: pytest.MonkeyPatch):
    # the run's worker 4242 and another user's job 777 (a pid that is not ours)
    fake = FakeNvmlLib([FakeGpu(UUID, "00000000:1A:00.0", processes=[(4242, 2**30),
                                                                      (777, 3 * 2**30)])])
    install(monkeypatch, fake)
    yield fake
    nvml.shutdown()


def gpu_sampler(now: list[float]):
    dev = Device(id="cuda:0", kind="cuda", index=0, name="fake", uuid=UUID)
    sampler = create_sampler([dev], 0.1, clock=lambda: now[0])
    sampler._probe._own = OwnProcesses(root=4242, children=lambda _: [], clock=lambda: now[0])
    sampler.start(background=False)
    sampler.watch_pids("multiprocess", {4242: "cuda:0"})
    sampler.mark("multiprocess", PHASE_ROUND, 0)
    for _ in range(3):
        now[0] += 0.1
        sampler.sample()
    sampler.mark(None, "between", None)
    return sampler


def test_another_users_job_on_the_gpu_is_named_with_its_sm_share(gpu_lib) -> None:
    gpu_lib.gpus[0].process_util = [(777, 10, 40), (4242, 10, 50), (777, 20, 60)]
    stats = gpu_sampler([100.0]).mode_other_load("multiprocess", ("cuda:0",))
    assert stats.pct == {"cuda:0": pytest.approx((50.0 + 0 + 0) / 3, abs=0.1)}
    assert [(p.pid, p.device) for p in stats.processes] == [(777, "cuda:0")]
    assert stats.processes[0].pct is not None


def test_without_per_process_utilisation_the_job_is_named_and_the_load_unknown(gpu_lib) -> None:
    gpu_lib.gpus[0].unsupported.add("nvmlDeviceGetProcessUtilization")
    stats = gpu_sampler([100.0]).mode_other_load("multiprocess", ("cuda:0",))
    assert stats.pct == {}  # not measured, never taken for quiet
    assert [(p.pid, p.pct) for p in stats.processes] == [(777, None)]


# --- a real program beside the run ------------------------------------------------------------


def _orphan_busy_loop(core: int) -> int:
    """A busy loop pinned to ``core`` that is not in this process's tree (its parent exits)."""
    code = ("import os, sys\nif os.fork(): sys.exit(0)\nos.setsid()\n"
            f"os.sched_setaffinity(0, {{{core}}})\nprint(os.getpid(), flush=True)\n"
            "os.close(1)\nwhile True: pass\n")
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, check=True, timeout=30)
    return int(out.stdout.split()[0])


def _cpu_s(pid: int) -> float:
    got = read_stat(f"/proc/{pid}/stat")
    return got.cpu_s if got is not None else 0.0


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 or not Path("/proc/self/task").is_dir(),
                    reason="needs Linux and two cores")
def test_a_real_busy_program_on_slot_1_is_measured_and_named() -> None:
    cores = sorted(os.sched_getaffinity(0))[:2]
    hog = _orphan_busy_loop(cores[1])
    try:
        devices = [Device(id=f"cpu:{i}", kind="cpu", index=i, name=f"s{i}", cores=(c,))
                   for i, c in enumerate(cores)]
        probe = HostProbe(devices)
        readings = []
        start = _cpu_s(hog)
        while _cpu_s(hog) - start < 1.5:  # until the hog has run 1.5 s of CPU (not a sleep)
            time.sleep(0.1)
            readings.append(probe.read({}))
    finally:
        os.kill(hog, 9)
    loads = [r["cpu:1"].other_util_pct for r in readings[1:] if r["cpu:1"].other_util_pct]
    assert loads and sum(loads) / len(loads) > 60
    named = [p for r in readings for p in r["cpu:1"].other_processes]
    assert hog in {p[0] for p in named}


def test_a_process_pinned_for_a_while_is_not_counted_twice_when_unpinned() -> None:
    fake, now = FakeProc(), [1000.0]
    fake.threads[10] = {10: (5.0, 0), 11: (3.0, 1)}  # the parent
    other = load(fake, {10}, now)
    other.own_cpu_s()
    fake.pinned[10] = {0}  # its main thread pinned to slot 0 while it trains there
    fake.threads[10] = {10: (5.5, 0), 11: (3.0, 1)}
    assert other.own_cpu_s() == {"cpu:0": pytest.approx(0.5), "cpu:1": 0.0}
    del fake.pinned[10]  # back: its threads are read one by one, with no baseline of theirs
    fake.threads[10] = {10: (5.6, 0), 11: (3.1, 1)}
    got = other.own_cpu_s()
    assert sum(got.values()) == pytest.approx(0.2)  # the process's own 0.2 s, not 8.7 s
