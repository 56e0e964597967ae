"""The host backend (psutil): CPU slots, and the resident memory of worker processes.

Used when the run has no GPU, or NVML cannot be loaded. A slot's utilisation is the mean over
its cores of the share of time each core was not idle since the previous sample (from
``/proc/stat`` through ``psutil.cpu_times(percpu=True)``), so a slot of two cores with one of
them saturated reads 50%. A slot's memory is the sum of the RSS of the processes watched on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psutil

from gpubench.machine.devices import Device
from gpubench.monitor.other_load import OtherLoad
from gpubench.monitor.probe import Reading

log = logging.getLogger(__name__)

PROCESS_REFRESH_S = 0.1  # watched processes are read at most this often

HOST_FIELDS = {
    "util": "mean over the slot's cores of the % of time each core was not idle since the "
    "previous sample (psutil.cpu_times per core); null for a GPU",
    "mem": "sum of the resident memory (RSS) of the processes watched on the device, bytes",
    "process_mem": "resident memory (RSS) of each watched pid, bytes",
    "own_util": "CPU time of the watched processes on the slot since the previous sample, "
    "% of the slot's cores",
    "other_util": "other programs' load: the slot's busy time less the CPU time of the run's "
    "whole process tree on the slot's cores (a process pinned to one slot counted there whole, "
    "another's threads each on the core it last ran on), % of the slot's cores, over the window "
    "since the previous process read (signed: the counters tick in 10 ms steps and are read a "
    "few ms apart; means over rounds are clamped at 0)",
    "other_processes": "the heaviest processes outside the run on a slot whose smoothed other "
    "load passed 5% (pid, command name, % of the slot since the previous scan; at most once a "
    "second)",
}


def core_busy_pct(before: Sequence[Any], after: Sequence[Any]) -> list[float | None]:
    """Per core: % of the time between two ``cpu_times(percpu=True)`` readings not idle."""
    out: list[float | None] = []
    for a, b in zip(before, after, strict=False):  # a core may go offline
        total = _total(b) - _total(a)
        idle = _idle(b) - _idle(a)
        out.append(None if total <= 0 else min(100.0, max(0.0, 100.0 * (total - idle) / total)))
    return out


def _total(t: Any) -> float:
    # On Linux guest time is already counted in user/nice: do not count it twice.
    return float(sum(t)) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def _idle(t: Any) -> float:
    return float(t.idle + getattr(t, "iowait", 0.0))


def slot_util_pct(per_core: Sequence[float | None], cores: Sequence[int]) -> float | None:
    """Mean busy % over a slot's cores (cores the kernel did not report are left out)."""
    values = [v for c in cores if c < len(per_core) and (v := per_core[c]) is not None]
    return sum(values) / len(values) if values else None


class HostProbe:
    backend = "host"
    fields = HOST_FIELDS
    mem_is_process_sum = True

    def __init__(
        self,
        devices: Sequence[Device],
        *,
        cpu_times: Callable[[], Sequence[Any]] | None = None,
        reason: str | None = None,
        other: OtherLoad | None = None,
    ) -> None:
        self._cores = {d.id: tuple(d.cores) for d in devices}
        self._cpu_times = cpu_times or (lambda: psutil.cpu_times(percpu=True))
        self._before = self._cpu_times()
        self._before_refresh = self._before
        self._other = other or OtherLoad(self._cores)
        self._other.own_cpu_s()  # from now on
        self._clock = time.monotonic
        self._at = self._clock()
        self._cpu_s: dict[int, float] = {}  # pid -> its CPU seconds at the previous read
        self._procs: dict[int, psutil.Process] = {}
        self._gone: set[int] = set()
        self._reason = reason
        self._proc_at: float | None = None
        self._last: dict[str, Reading] = {}

    def _process(self, pid: int) -> tuple[int, float] | None:
        """(RSS bytes, CPU seconds so far) of a watched process, or None once it is gone."""
        if pid in self._gone:
            return None
        proc = self._procs.get(pid)
        try:
            if proc is None:
                proc = self._procs[pid] = psutil.Process(pid)
            with proc.oneshot():
                cpu = proc.cpu_times()
                return int(proc.memory_info().rss), float(cpu.user + cpu.system)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            self._procs.pop(pid, None)
        except psutil.AccessDenied:
            log.info("no permission to read pid %d", pid)
        self._gone.add(pid)
        return None

    def read(self, pids_by_device: Mapping[str, Sequence[int]]) -> dict[str, Reading]:
        after, at = self._cpu_times(), self._clock()
        per_core = core_busy_pct(self._before, after)
        self._before, self._at = after, at
        # Per-process reads cost far more than /proc/stat; at short intervals they would take
        # a busy slot's time (0.01 s: +5.6% on a round with both slots busy). Processes are
        # read at most every PROCESS_REFRESH_S; between reads their last values stand.
        refresh = self._proc_at is None or at - self._proc_at >= PROCESS_REFRESH_S - 1e-3
        elapsed = 0.0 if self._proc_at is None else at - self._proc_at
        other_pct: dict[str, float | None] = {}
        if refresh:
            self._proc_at = at
            other_pct = self._other_load(after, pids_by_device, elapsed)
        named = self._other.name_others(other_pct) if refresh else {}
        out: dict[str, Reading] = {}
        for dev_id, cores in self._cores.items():
            r = Reading(util_pct=slot_util_pct(per_core, cores))
            if not refresh:
                last = self._last.get(dev_id)
                if last is not None:
                    r.process_mem_bytes = dict(last.process_mem_bytes)
                    r.mem_bytes, r.own_util_pct = last.mem_bytes, last.own_util_pct
                    r.other_util_pct = last.other_util_pct
                out[dev_id] = r
                continue
            own, known = 0.0, False
            for pid in pids_by_device.get(dev_id, ()):
                got = self._process(pid)
                if got is None:
                    continue
                r.process_mem_bytes[pid], cpu_s = got
                if pid in self._cpu_s:
                    own, known = own + cpu_s - self._cpu_s[pid], True
                self._cpu_s[pid] = cpu_s
            if r.process_mem_bytes:
                r.mem_bytes = sum(r.process_mem_bytes.values())
            if known and cores and elapsed > 0:
                r.own_util_pct = min(100.0, 100.0 * own / (elapsed * len(cores)))
            r.other_util_pct = other_pct.get(dev_id)
            r.other_processes = [(p.pid, p.name, p.pct) for p in named.get(dev_id, ())]
            out[dev_id] = r
            self._last[dev_id] = r
        return out

    def _other_load(
        self, after: Sequence[Any], pids_by_device: Mapping[str, Sequence[int]], elapsed: float
    ) -> dict[str, float | None]:
        """Other programs' load per slot over the window since the previous process read."""
        per_core = core_busy_pct(self._before_refresh, after)
        self._before_refresh = after
        for pids in pids_by_device.values():
            self._other.own.add(pids)
        busy = {d: slot_util_pct(per_core, cores) for d, cores in self._cores.items()}
        return self._other.other_pct(busy, self._other.own_cpu_s(), elapsed)

    def notes(self) -> list[str]:
        notes = [self._reason] if self._reason else []
        gpus = [d for d, cores in self._cores.items() if not cores]
        if gpus:
            notes.append(
                f"{', '.join(gpus)}: GPU utilisation not measured without NVML; "
                "memory is the RSS of the watched processes"
            )
        return notes

    def close(self) -> None:
        self._procs.clear()
