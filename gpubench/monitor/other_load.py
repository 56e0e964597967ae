"""Other programs' load on CPU slots: the slot's busy time less the run's own CPU time.

"Own" is the run's whole process tree: this process, every descendant (workers, their
DataLoader workers, the Ray or Flower processes the run started) and any pid a mode named as
its own (:meth:`OwnProcesses.add`). The tree is listed every ``TREE_REFRESH_S``: a process that
started during the run and is listed late counts from its start; one that ended before it
was listed counts through its parent (below); one not listed yet is never named as another
program's when its parent is own. Everything else that keeps a slot's cores busy is
*other* load, so that a busy neighbour shows as such instead of passing for a slow mode.

How it is read (Linux, from ``/proc``):

- own CPU time per slot: how much is always the process's own total since the previous read
  (``/proc/<pid>/stat``: utime + stime, every thread once, also those that ended). A process
  pinned to one slot's cores (a worker) counts it on that slot; for any other own process
  (the parent, whose training threads are pinned one by one) it is shared out by its threads'
  CPU time since the previous read (``/proc/<pid>/task/<tid>/stat``), each on the slot of the
  core the thread last ran on (field 39), the rest on the slot the process last ran on. A
  pinned thread runs on its slot's cores only, so this is exact for workers and for the
  parent's training threads; an unpinned helper thread is put where it last ran. (Summing the
  threads instead counted a thread's whole life again after the parent's main thread had been
  pinned for a while: one window then read -100%, the next +95%.)
- children too short-lived for the tree's listing (a DataLoader's workers of one client, made
  and gone within a second): their CPU time reaches their parent when it reaps them
  (``/proc/<pid>/stat``: cutime + cstime). What an own process's reaped children used since
  the previous read, less the last-read totals of own children seen there that ended, is own
  time: on the parent's slot when it is pinned to one, else spread over the slots its threads
  used in the window (the slot it last ran on when none).
- a slot's other load: its busy share (``/proc/stat``, per core) over the same window, less the
  own CPU time on its cores. One window's value is signed (the counters tick in 10 ms steps and
  are read a few milliseconds apart); the means over a round or a mode are clamped at 0.
- who: when a slot's other load passes ``NAME_ABOVE_PCT``, at most once every
  ``SCAN_EVERY_S``, every process outside the tree is read once (``/proc/<pid>/stat``) and
  its CPU time since the previous scan is put on the slot of its last core; the heaviest are
  named (pid, command name, % of the slot).

Off Linux (no ``/proc/<pid>/task``) other load is not measured (null).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import psutil

TREE_REFRESH_S = 0.25  # the process tree is listed again at most this often (a process found
# later counts from its start, see OtherLoad.own_cpu_s)
SCAN_EVERY_S = 1.0  # other processes are named at most this often
NAME_ABOVE_PCT = 5.0  # a slot's other load above which its processes are named
TOP_PROCESSES = 3  # named per slot and scan
RECENT_WEIGHT = 0.3  # a new window's weight in a slot's smoothed other load
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcStat:
    """What ``/proc/<pid>[/task/<tid>]/stat`` says of a process or thread."""

    name: str
    cpu_s: float  # utime + stime
    core: int  # the core it last ran on
    start_ticks: int  # when it started, clock ticks after boot
    children_s: float = 0.0  # cutime + cstime: its children's, once it reaped them
    ppid: int = 0


def parse_stat(text: str) -> ProcStat:
    """Parse a ``stat`` line; the command name may hold spaces and parentheses."""
    open_, close = text.index("("), text.rindex(")")
    rest = text[close + 2 :].split()
    # rest[0] is field 3 (state): ppid 4, utime 14, stime 15, cutime 16, cstime 17,
    # starttime 22, processor 39.
    return ProcStat(
        name=text[open_ + 1 : close],
        cpu_s=(int(rest[11]) + int(rest[12])) / _CLK_TCK,
        core=int(rest[36]),
        start_ticks=int(rest[19]),
        children_s=(int(rest[13]) + int(rest[14])) / _CLK_TCK,
        ppid=int(rest[1]),
    )


def read_stat(path: str) -> ProcStat | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_stat(f.read())
    except (OSError, ValueError, IndexError):  # gone, or not readable
        return None


def _threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


class OwnProcesses:
    """The run's process tree: ``root`` and its descendants, plus pids added by name."""

    def __init__(
        self,
        root: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        children: Callable[[int], Iterable[int]] | None = None,
    ) -> None:
        self.root = os.getpid() if root is None else root
        self._clock = clock
        self._children = children or _descendants
        self._added: set[int] = set()
        self._pids: set[int] = {self.root}
        self._at: float | None = None

    def add(self, pids: Iterable[int]) -> None:
        self._added.update(int(p) for p in pids)

    def pids(self) -> set[int]:
        now = self._clock()
        if self._at is None or now - self._at >= TREE_REFRESH_S:
            self._at = now
            self._pids = {self.root, *self._children(self.root)}
        return self._pids | self._added


def _descendants(root: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(root).children(recursive=True)]
    except psutil.Error:
        return []


@dataclass(frozen=True)
class OtherProcess:
    """A process outside the run that used a slot's cores between two scans."""

    pid: int
    name: str
    pct: float  # % of the slot's capacity


class OtherLoad:
    """Own CPU time per slot, other load per slot, and the heaviest other processes.

    ``slots`` maps a device id to its cores (a GPU, with no cores, is left out: NVML reads
    its processes). ``stat`` reads one ``stat`` file (injectable for tests).
    """

    def __init__(
        self,
        slots: Mapping[str, Sequence[int]],
        own: OwnProcesses | None = None,
        *,
        stat: Callable[[str], ProcStat | None] = read_stat,
        list_pids: Callable[[], Iterable[int]] | None = None,
        threads: Callable[[int], list[int]] = _threads,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        affinity: Callable[[int], Iterable[int]] | None = None,
    ) -> None:
        self._affinity = affinity or _affinity
        self._slot_of = {c: d for d, cores in slots.items() for c in cores}
        self._cores = {d: len(cores) for d, cores in slots.items() if cores}
        self.own = own or OwnProcesses(clock=clock)
        self._stat = stat
        self._list_pids = list_pids or _all_pids
        self._threads = threads
        self._clock = clock
        self._thread_cpu: dict[tuple[int, int], float] = {}
        self._last: dict[int, ProcStat] = {}  # per own pid, its previous read
        self._others: dict[int, float] | None = None
        self._recent: dict[str, float] = {}  # per slot, other load smoothed over windows
        self._boot = boot_time()
        self._wall = wall
        self._first_at: float | None = None  # wall-clock time of the first own read
        self._scan_at: float | None = None
        self._linux = os.path.isdir("/proc/self/task")

    def own_cpu_s(self) -> dict[str, float]:
        """Own CPU seconds per slot since the previous call. A process seen for the first
        time counts from its start if it started after the first call (a loader worker
        started inside a round, listed only at the tree's next listing), else from now;
        children that came and went between two listings count through their parent (see
        the module docstring)."""
        out = dict.fromkeys(self._cores, 0.0)
        first = self._first_at is None
        read_at = self._first_at = self._wall() if self._first_at is None else self._first_at
        alive_threads: dict[tuple[int, int], float] = {}
        alive = {pid: p for pid in self.own.pids()
                 if (p := self._stat(f"/proc/{pid}/stat")) is not None}
        # per parent, the last-read totals of its own children that have ended since
        ended: dict[int, float] = {}
        for c, p in self._last.items():
            if c not in alive:
                ended[p.ppid] = ended.get(p.ppid, 0.0) + p.cpu_s + p.children_s
        for pid, proc in alive.items():
            last = self._last.get(pid)
            known = last is not None
            new = not known and not first and self._started(proc) > read_at
            counted = known or new
            amount = max(0.0, proc.cpu_s - (last.cpu_s if last else 0.0)) if counted else 0.0
            slot = self._pinned_slot(pid)
            per_slot = dict.fromkeys(self._cores, 0.0)
            if slot is not None:  # a process pinned to one slot: its own total will do
                per_slot[slot] += amount
            else:
                # How much: the process's own total, which counts every thread once (also
                # those that ended); where: its threads' shares since the previous read, each
                # on the slot of the core it last ran on (a thread without one, e.g. read while
                # the process was pinned, weighs its whole time), the rest where it last ran.
                weights = dict.fromkeys(self._cores, 0.0)
                for tid in self._threads(pid):
                    t = self._stat(f"/proc/{pid}/task/{tid}/stat")
                    if t is None:
                        continue
                    alive_threads[(pid, tid)] = t.cpu_s
                    self._put(weights, t.core, t.cpu_s - self._thread_cpu.get((pid, tid), 0.0))
                if counted:
                    placed = sum(weights.values())
                    for d, v in weights.items():
                        per_slot[d] += v * min(1.0, amount / placed) if placed > 0 else 0.0
                    self._put(per_slot, proc.core, amount - min(amount, placed))
            if counted:
                before = last.children_s if last else 0.0
                self._reaped(per_slot, slot, proc, before + ended.get(pid, 0.0))
            for d, v in per_slot.items():
                out[d] += v
        self._last = alive
        self._thread_cpu = alive_threads
        return out

    def _reaped(self, per_slot: dict[str, float], slot: str | None, proc: ProcStat,
                counted_s: float) -> None:
        """Add to ``per_slot`` the time of the process's children that ended unseen: its
        reaped children's total less ``counted_s`` (that total at the previous read, plus the
        last-read totals of its own children that have ended: counted while they ran)."""
        unseen = proc.children_s - counted_s
        if unseen <= 0:
            return
        if slot is not None:
            per_slot[slot] += unseen
            return
        used = sum(per_slot.values())
        if used <= 0:
            self._put(per_slot, proc.core, unseen)
            return
        for d, v in list(per_slot.items()):
            per_slot[d] += unseen * v / used

    def _pinned_slot(self, pid: int) -> str | None:
        """The slot whose cores hold all of ``pid``'s allowed cores (a worker pinned to its
        slot), else None (the parent: its training threads are pinned one by one)."""
        try:
            slots = {self._slot_of.get(c) for c in self._affinity(pid)}
        except OSError:
            return None
        return slots.pop() if len(slots) == 1 else None

    def _started(self, proc: ProcStat) -> float:
        return self._boot + proc.start_ticks / _CLK_TCK

    def _put(self, out: dict[str, float], core: int, seconds: float) -> float:
        if seconds <= 0:
            return 0.0
        slot = self._slot_of.get(core)
        if slot is not None:
            out[slot] += seconds
        return seconds

    def other_pct(self, busy_pct: Mapping[str, float | None], own_s: Mapping[str, float],
                  elapsed_s: float) -> dict[str, float | None]:
        """Per slot: its busy % less the own CPU time on its cores, as % of its capacity
        (signed: see the module docstring)."""
        out: dict[str, float | None] = {}
        for d, n in self._cores.items():
            busy = busy_pct.get(d)
            if busy is None or elapsed_s <= 0 or not self._linux:
                out[d] = None
                continue
            own = 100.0 * own_s.get(d, 0.0) / (elapsed_s * n)
            # Signed: the two counters are read a few milliseconds apart and tick in 10 ms
            # steps, so one window's difference scatters around the truth both ways; only a
            # mean over many windows is clamped at 0 (clamping each window would bias it up).
            out[d] = max(-100.0, min(100.0, busy - own))
        return out

    def name_others(self, other_pct: Mapping[str, float | None]) -> dict[str, list[OtherProcess]]:
        """The heaviest other processes per slot, when a slot's other load calls for it (the
        first call only remembers every process's CPU time)."""
        now = self._clock()
        # One window's value is noisy (signed): a slot calls for names when its recent
        # windows, smoothed, pass the threshold.
        for d, v in other_pct.items():
            if v is not None:
                self._recent[d] = RECENT_WEIGHT * v + (1 - RECENT_WEIGHT) * self._recent.get(d, v)
        wanted = any(v > NAME_ABOVE_PCT for v in self._recent.values())
        due = self._scan_at is None or now - self._scan_at >= SCAN_EVERY_S
        if not self._linux or not due or (self._others is not None and not wanted):
            return {}
        own = self.own.pids()
        cpu: dict[int, float] = {}
        used: dict[str, list[tuple[float, int, str]]] = {}
        previous, since = self._others, (now - self._scan_at) if self._scan_at else 0.0
        for pid in self._list_pids():
            if pid in own:
                continue
            proc = self._stat(f"/proc/{pid}/stat")
            if proc is None or proc.ppid in own:  # a child of ours not listed yet
                continue
            cpu[pid] = proc.cpu_s
            slot = self._slot_of.get(proc.core)
            if previous is None or slot is None or since <= 0:
                continue
            delta = proc.cpu_s - previous.get(pid, 0.0)
            if delta > 0:
                used.setdefault(slot, []).append((delta, pid, proc.name))
        self._others, self._scan_at = cpu, now
        out: dict[str, list[OtherProcess]] = {}
        for slot, rows in used.items():
            rows.sort(reverse=True)
            out[slot] = [
                OtherProcess(pid, name, round(100.0 * s / (since * self._cores[slot]), 1))
                for s, pid, name in rows[:TOP_PROCESSES]
            ]
        return out


def boot_time() -> float:
    """When the machine booted, wall-clock, to the kernel's 10 ms (``/proc/uptime``): a
    process's start (in clock ticks after boot) is compared with the run's first read, and
    ``psutil.boot_time`` is whole seconds, too coarse for a worker started a moment later."""
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            return time.time() - float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return psutil.boot_time()


def _affinity(pid: int) -> Iterable[int]:
    return os.sched_getaffinity(pid) if hasattr(os, "sched_getaffinity") else ()


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]
