"""Progress of a run on stderr: mode, round, clients done, elapsed and an estimate of time left.

A display is the harness's progress hook, ``display(mode, phase, index, total)``, optionally with
``clients_done=`` / ``clients_total=`` as clients finish. On a terminal it is a ``rich`` bar;
elsewhere (CI logs) plain lines, at most one every :data:`PLAIN_INTERVAL_S` seconds plus the
final line of each mode, never a carriage-return animation. ``quiet`` shows nothing.

The time left comes from the work done so far across every mode of the run, where the work of
a mode is (warm-up + measured rounds) x clients. Use a display as a context manager so the
terminal is restored whatever happens: Ctrl-C, and SIGTERM, which the command line turns
into an interrupt (:func:`gpubench.cli.sigterm_as_interrupt`), unwind through its ``__exit__``;
a display left open is closed at exit.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, TextIO

Clock = Callable[[], float]

PLAIN_INTERVAL_S = 10.0
PHASE_COLD_START = "cold_start"
PHASE_WARMUP = "warmup"
PHASE_ROUND = "round"
PHASE_DONE = "done"
PHASE_FAILED = "failed"
FINAL_PHASES = (PHASE_DONE, PHASE_FAILED)


@dataclass(frozen=True)
class ModeWork:
    """The work one mode of a run has ahead of it."""

    warmup: int
    rounds: int
    clients: int

    @property
    def units(self) -> int:
        return (self.warmup + self.rounds) * max(self.clients, 1)


class _RunShape(Protocol):
    @property
    def modes(self) -> Sequence[str]: ...
    @property
    def warmup(self) -> int: ...
    @property
    def rounds(self) -> int: ...
    @property
    def clients(self) -> int: ...


def work_for(config: _RunShape) -> list[ModeWork]:
    """One :class:`ModeWork` per mode of a run config, in the order the modes start."""
    return [ModeWork(config.warmup, config.rounds, config.clients) for _ in config.modes]


def format_duration(seconds: float) -> str:
    s = max(0, int(seconds + 0.5))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class _ModeState:
    work: ModeWork
    started_s: float
    label: str = "starting"
    rounds_done: int = 0
    clients_done: int | None = None
    in_round: bool = False
    finished: bool = False
    failed: bool = False

    @property
    def units_done(self) -> int:
        planned = self.work.warmup + self.work.rounds
        done = min(self.rounds_done, planned) * max(self.work.clients, 1)
        return done + (self.clients_done or 0)

    @property
    def units_total(self) -> int:
        return self.units_done if self.failed else self.work.units


class ProgressTracker:
    """What a display shows, from the calls so far; pure state, no output.

    Mode names take the expected work in the order they are first seen (the harness starts
    the modes in the config's order, a sweep its points in order).
    """

    def __init__(self, work: Iterable[ModeWork], clock: Clock) -> None:
        self.expected = list(work)
        self.clock = clock
        self.started_s = clock()
        self.modes: dict[str, _ModeState] = {}
        self.current: str | None = None
        self._eta_s: float | None = None
        self._eta_at_s = self.started_s

    def update(self, mode: str, phase: str, index: int, total: int,
               clients_done: int | None = None, clients_total: int | None = None) -> _ModeState:
        now = self.clock()
        state = self.modes.get(mode)
        if state is None:
            n = len(self.modes)
            work = self.expected[n] if n < len(self.expected) else ModeWork(
                0, max(total, 1), clients_total or 1)
            state = self.modes[mode] = _ModeState(work, now)
        if clients_total is not None and clients_total != state.work.clients:
            state.work = ModeWork(state.work.warmup, state.work.rounds, clients_total)
        previous = self.modes.get(self.current) if self.current is not None else None
        if previous is not None and previous is not state and previous.in_round:
            # The harness runs one round at a time: another mode's call means it ended.
            previous.rounds_done += 1
            previous.clients_done, previous.in_round = None, False
        self.current = mode
        state.in_round = phase in (PHASE_WARMUP, PHASE_ROUND)
        if phase == PHASE_COLD_START:
            state.label = "starting"
        elif phase in (PHASE_WARMUP, PHASE_ROUND):
            before = 0 if phase == PHASE_WARMUP else state.work.warmup
            state.rounds_done = before + max(index - 1, 0)
            state.clients_done = clients_done
            kind = "warm-up" if phase == PHASE_WARMUP else "round"
            state.label = f"{kind} {index}/{total}"
        elif phase == PHASE_DONE:
            state.rounds_done = state.work.warmup + state.work.rounds
            state.clients_done = None
            state.finished, state.label = True, f"done in {format_duration(now - state.started_s)}"
        elif phase == PHASE_FAILED:
            state.finished = state.failed = True
            state.label = "FAILED"
        else:
            state.label = phase
        done, left = self.units_done, self.units_total - self.units_done
        self._eta_at_s = now
        self._eta_s = left * (now - self.started_s) / done if done else (0.0 if not left else None)
        return state

    @property
    def units_done(self) -> int:
        return sum(s.units_done for s in self.modes.values())

    @property
    def units_total(self) -> int:
        unseen = self.expected[len(self.modes):]
        return sum(s.units_total for s in self.modes.values()) + sum(w.units for w in unseen)

    def elapsed_s(self, now: float | None = None) -> float:
        return (self.clock() if now is None else now) - self.started_s

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left: the work left at the rate of the work done so far (None: no rate)."""
        if self._eta_s is None:
            return None
        since = (self.clock() if now is None else now) - self._eta_at_s
        return max(0.0, self._eta_s - since)

    def times_text(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        eta = self.eta_s(now)
        left = "time left unknown" if eta is None else f"about {format_duration(eta)} left"
        return f"elapsed {format_duration(self.elapsed_s(now))}, {left}"

    def status_text(self, mode: str) -> str:
        state = self.modes[mode]
        text = f"{mode}: {state.label}"
        if state.clients_done is not None and not state.finished:
            text += f", clients {state.clients_done}/{state.work.clients}"
        return text

    def percent(self) -> int:
        total = self.units_total
        return int(100 * self.units_done / total) if total else 100


# --- displays -----------------------------------------------------------------------------------

_OPEN: weakref.WeakSet[Display] = weakref.WeakSet()


class Display:
    """The harness's progress hook; closing it (or leaving its ``with``) ends the display."""

    def __init__(self, tracker: ProgressTracker | None = None) -> None:
        self.tracker = tracker
        self.closed = False
        self._lock = threading.RLock()
        _OPEN.add(self)

    def __call__(self, mode: str, phase: str, index: int, total: int, *,
                 clients_done: int | None = None, clients_total: int | None = None) -> None:
        if self.tracker is None:
            return
        with self._lock:
            if self.closed:
                return
            self.tracker.update(mode, phase, index, total, clients_done, clients_total)
            try:
                self._show(mode, phase)
            except OSError:  # stderr went away (a closed pipe): the run goes on without display
                self.closed = True

    def _show(self, mode: str, phase: str) -> None:
        pass

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._end()
            _OPEN.discard(self)

    def _end(self) -> None:
        pass

    def __enter__(self) -> Display:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class PlainDisplay(Display):
    """Whole lines for logs: at most one per ``interval_s``, and every mode's final line."""

    def __init__(self, tracker: ProgressTracker, stream: TextIO,
                 interval_s: float = PLAIN_INTERVAL_S) -> None:
        super().__init__(tracker)
        self.stream = stream
        self.interval_s = interval_s
        self._last_line_s: float | None = None

    def _show(self, mode: str, phase: str) -> None:
        assert self.tracker is not None
        now = self.tracker.clock()
        due = self._last_line_s is None or now - self._last_line_s >= self.interval_s
        if not (due or phase in FINAL_PHASES):
            return
        t = self.tracker
        self.stream.write(f"gpubench: {t.status_text(mode)} | {t.percent()}% | "
                          f"{t.times_text(now)}\n")
        self.stream.flush()
        self._last_line_s = now


class RichDisplay(Display):
    """A ``rich`` bar on a terminal; each mode's final line stays above it."""

    def __init__(self, tracker: ProgressTracker, stream: TextIO,
                 refresh_per_second: float = 4.0) -> None:
        super().__init__(tracker)
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
        from rich.table import Column

        console = Console(file=stream, force_terminal=True)
        self._progress = Progress(
            # the description may wrap; the times stay whole
            TextColumn("{task.description}", markup=False, table_column=Column(overflow="fold")),
            BarColumn(bar_width=20),
            TaskProgressColumn(),
            _times_column(tracker),
            console=console, get_time=tracker.clock, refresh_per_second=refresh_per_second,
            redirect_stdout=False,  # stdout may be a file or a pipe: its text stays there
        )
        self._task = self._progress.add_task("starting", total=tracker.units_total)
        self._progress.start()

    def _show(self, mode: str, phase: str) -> None:
        assert self.tracker is not None
        t = self.tracker
        text = t.status_text(mode)
        self._progress.update(self._task, description=text,
                              total=t.units_total, completed=t.units_done, refresh=True)
        if phase in FINAL_PHASES:
            self._progress.console.print(f"gpubench: {text}", highlight=False, markup=False)

    def _end(self) -> None:
        self._progress.stop()  # shows the cursor again, ends the bar's line


def _times_column(tracker: ProgressTracker) -> Any:
    from rich.progress import ProgressColumn
    from rich.table import Column
    from rich.text import Text

    class TimesColumn(ProgressColumn):
        def get_table_column(self) -> Column:
            return Column(no_wrap=True)

        def render(self, task: Any) -> Text:
            return Text(tracker.times_text(), style="progress.remaining", no_wrap=True)

    return TimesColumn()


def _is_terminal(stream: TextIO) -> bool:
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    return tty and os.environ.get("TERM", "") not in ("dumb", "unknown")


def open_progress(
    work: Iterable[ModeWork],
    *,
    quiet: bool = False,
    stream: TextIO | None = None,
    clock: Clock = time.monotonic,
    interval_s: float = PLAIN_INTERVAL_S,
) -> Display:
    """The display for a run: nothing when ``quiet``, ``rich`` on a terminal, else plain lines."""
    if quiet:
        return Display()
    stream = sys.stderr if stream is None else stream
    tracker = ProgressTracker(work, clock)
    if _is_terminal(stream):
        try:
            return RichDisplay(tracker, stream)
        except ImportError:
            pass
    return PlainDisplay(tracker, stream, interval_s)


def close_open_displays() -> None:
    """Close every display still open (the CLI's last word, and at exit)."""
    for display in list(_OPEN):
        display.close()


atexit.register(close_open_displays)
