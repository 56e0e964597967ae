"""The progress display: plain lines for logs (rate-limited), rich on a terminal, quiet silent.

Time is a fake clock throughout: no test sleeps.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from gpubench.commands.progress import (
    ModeWork,
    PlainDisplay,
    ProgressTracker,
    RichDisplay,
    close_open_displays,
    format_duration,
    open_progress,
    work_for,
)
from tests.conftest import ROOT

SHOW_CURSOR = "\x1b[?25h"
HIDE_CURSOR = "\x1b[?25l"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture(autouse=True)
def a_real_terminal(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")


def _lines(stream: Stream) -> list[str]:
    return stream.getvalue().splitlines()


# --- plain lines ---------------------------------------------------------------------------------


def test_plain_lines_come_at_most_every_10_s_and_each_modes_last_line_always():
    clock, out = FakeClock(), Stream(tty=False)
    display = open_progress([ModeWork(0, 30, 1)] * 2, stream=out, clock=clock)
    assert isinstance(display, PlainDisplay)
    written_at = []

    def call(*args: object) -> None:
        before = len(_lines(out))
        display(*args)  # type: ignore[arg-type]
        if len(_lines(out)) > before:
            written_at.append(round(clock.now, 6))

    for mode in ("serial", "multi-gpu"):
        call(mode, "cold_start", 0, 1)
        for i in range(1, 31):  # a round every 0.7 s: 21 s per mode
            call(mode, "round", i, 30)
            clock.now += 0.7
        lines = len(_lines(out))
        call(mode, "done", 1, 1)
        assert len(_lines(out)) == lines + 1, "a mode's final line is never held back"
        assert _lines(out)[-1].startswith(f"gpubench: {mode}: done in 0:21 | ")
    display.close()
    # serial's done (21 s) comes 10.5 s after the line before; multi-gpu's (42 s) 10.5 s too,
    # but its cold start (also at 21 s) is held back: the done line just went out.
    assert written_at == [0.0, 10.5, 21.0, 31.5, 42.0]
    assert "\r" not in out.getvalue()
    assert all(line.startswith("gpubench: ") for line in _lines(out))


def test_a_final_line_within_10_s_of_the_last_is_still_written():
    clock, out = FakeClock(), Stream(tty=False)
    with open_progress([ModeWork(0, 2, 1)], stream=out, clock=clock) as display:
        display("serial", "round", 1, 2)
        clock.now = 1.0
        display("serial", "round", 2, 2)
        clock.now = 2.0
        display("serial", "done", 1, 1)
    assert [line.split(" | ")[0] for line in _lines(out)] == [
        "gpubench: serial: round 1/2", "gpubench: serial: done in 0:02"]


def test_plain_line_shows_mode_round_clients_elapsed_and_time_left():
    clock, out = FakeClock(), Stream(tty=False)
    with open_progress([ModeWork(1, 3, 10)], stream=out, clock=clock, interval_s=0) as display:
        clock.now = 30.0
        display("serial", "round", 2, 3, clients_done=5, clients_total=10)
    # 1 warm-up + 1 round + 5 clients = 25 of 40 client-rounds in 30 s: 15 more take 18 s
    assert _lines(out)[-1] == ("gpubench: serial: round 2/3, clients 5/10 | 62% | "
                               "elapsed 0:30, about 0:18 left")


def test_without_any_work_done_the_time_left_is_unknown():
    out = Stream(tty=False)
    with open_progress([ModeWork(1, 1, 2)], stream=out, clock=FakeClock()) as display:
        display("serial", "cold_start", 0, 1)
    assert _lines(out) == ["gpubench: serial: starting | 0% | elapsed 0:00, time left unknown"]


# --- the estimate of time left ------------------------------------------------------------------


def test_time_left_uses_the_work_done_across_all_modes():
    clock = FakeClock()
    t = ProgressTracker([ModeWork(1, 2, 10)] * 2, clock)  # 2 modes x 3 rounds x 10 clients
    assert t.units_total == 60 and t.eta_s() is None
    t.update("serial", "cold_start", 0, 1)
    clock.now = 20.0
    t.update("serial", "round", 2, 2)  # warm-up and round 1 done: 20 of 60
    assert t.units_done == 20 and t.eta_s() == pytest.approx(40.0)
    clock.now = 25.0
    assert t.eta_s() == pytest.approx(35.0)  # counts down between calls
    t.update("serial", "round", 2, 2, clients_done=5, clients_total=10)  # 25 of 60 in 25 s
    assert t.eta_s() == pytest.approx(35.0)
    clock.now = 30.0
    t.update("serial", "done", 1, 1)  # 30 of 60 in 30 s
    assert t.eta_s() == pytest.approx(30.0)
    clock.now = 40.0
    t.update("multi-gpu", "round", 1, 2)  # its warm-up done: 40 of 60 in 40 s
    assert t.units_done == 40 and t.eta_s() == pytest.approx(20.0)
    clock.now = 100.0
    assert t.eta_s() == 0.0  # never negative
    t.update("multi-gpu", "done", 1, 1)
    assert t.units_done == t.units_total == 60 and t.eta_s() == 0.0


def test_a_failed_mode_takes_its_remaining_work_out_of_the_estimate():
    clock = FakeClock()
    t = ProgressTracker([ModeWork(0, 4, 5)] * 2, clock)
    t.update("ray", "cold_start", 0, 1)
    t.update("ray", "failed", 0, 1)  # not applicable: nothing of it will run
    assert t.units_total == 20
    clock.now = 10.0
    t.update("serial", "round", 3, 4)  # 10 of 20 in 10 s
    assert t.eta_s() == pytest.approx(10.0)


def test_interleaved_rounds_count_when_the_next_mode_starts_its_round():
    clock = FakeClock()
    t = ProgressTracker([ModeWork(0, 2, 4)] * 2, clock)
    for mode in ("serial", "threaded"):
        t.update(mode, "cold_start", 0, 1)
    t.update("serial", "round", 1, 2)
    assert t.units_done == 0
    clock.now = 8.0
    t.update("threaded", "round", 1, 2)  # serial's round 1 has returned
    assert t.units_done == 4 and t.eta_s() == pytest.approx(24.0)
    clock.now = 12.0
    t.update("serial", "round", 2, 2)
    assert t.units_done == 8
    assert t.status_text("serial") == "serial: round 2/2"


def test_clients_total_from_the_calls_corrects_the_expected_work():
    t = ProgressTracker([ModeWork(0, 1, 10)], FakeClock())
    t.update("serial", "round", 1, 1, clients_done=1, clients_total=4)
    assert t.units_total == 4 and t.units_done == 1
    assert t.status_text("serial") == "serial: round 1/1, clients 1/4"


def test_work_for_a_config_and_durations():
    from gpubench.config import RunConfig

    config = RunConfig(case="mlp", clients=7, modes=("serial", "multi-gpu"), warmup=2, rounds=5)
    assert work_for(config) == [ModeWork(2, 5, 7)] * 2
    assert [format_duration(s) for s in (0, 59.6, 61, 3725)] == ["0:00", "1:00", "1:01",
                                                                "1:02:05"]


# --- rich on a terminal, quiet, closing ---------------------------------------------------------


def test_rich_only_on_a_terminal():
    tty, log = Stream(tty=True), Stream(tty=False)
    with open_progress([ModeWork(0, 1, 1)], stream=tty, clock=FakeClock()) as shown:
        assert isinstance(shown, RichDisplay)
        shown("serial", "round", 1, 1)
        shown("serial", "done", 1, 1)
    text = tty.getvalue()
    assert HIDE_CURSOR in text and text.rstrip("\n").endswith(SHOW_CURSOR)
    assert "gpubench: serial: done in 0:00\n" in text  # the final line stays above the bar
    with open_progress([ModeWork(0, 1, 1)], stream=log, clock=FakeClock()) as plain:
        assert isinstance(plain, PlainDisplay)
        plain("serial", "done", 1, 1)
    assert "\x1b[" not in log.getvalue()


def test_a_dumb_terminal_gets_plain_lines(monkeypatch):
    monkeypatch.setenv("TERM", "dumb")
    display = open_progress([ModeWork(0, 1, 1)], stream=Stream(tty=True), clock=FakeClock())
    assert isinstance(display, PlainDisplay)
    display.close()


@pytest.mark.parametrize("tty", [True, False])
def test_quiet_prints_nothing(tty):
    out = Stream(tty=tty)
    with open_progress([ModeWork(1, 1, 2)], quiet=True, stream=out, clock=FakeClock()) as d:
        d("serial", "cold_start", 0, 1)
        d("serial", "round", 1, 1, clients_done=1, clients_total=2)
        d("serial", "done", 1, 1)
    assert out.getvalue() == ""


def test_ctrl_c_inside_a_display_restores_the_terminal():
    out = Stream(tty=True)
    with pytest.raises(KeyboardInterrupt):
        with open_progress([ModeWork(0, 2, 1)], stream=out, clock=FakeClock()) as display:
            display("serial", "round", 1, 2)
            raise KeyboardInterrupt
    assert display.closed and out.getvalue().rstrip("\n").endswith(SHOW_CURSOR)
    display("serial", "round", 2, 2)  # a call after closing writes nothing
    assert out.getvalue().rstrip("\n").endswith(SHOW_CURSOR)


def test_a_display_leaves_sigterm_to_the_command_line():
    before = signal.getsignal(signal.SIGTERM)
    display = open_progress([ModeWork(0, 1, 1)], stream=Stream(tty=True), clock=FakeClock())
    assert signal.getsignal(signal.SIGTERM) == before  # one policy, in gpubench.cli
    display.close()


def test_sigterm_restores_the_terminal_then_terminates(tmp_path):
    log = tmp_path / "tty.txt"
    script = textwrap.dedent(f"""
        import os, signal
        from gpubench.cli import sigterm_as_interrupt
        from gpubench.commands.progress import ModeWork, open_progress

        class Tty:
            def __init__(self, f): self.f = f
            def isatty(self): return True
            def write(self, s): self.f.write(s); self.f.flush(); return len(s)
            def flush(self): self.f.flush()

        stream = Tty(open({str(log)!r}, "w"))
        with sigterm_as_interrupt():
            with open_progress([ModeWork(0, 2, 1)], stream=stream, clock=lambda: 0.0) as display:
                display("serial", "round", 1, 2)
                os.kill(os.getpid(), signal.SIGTERM)
                signal.pause()
        print("still running")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "TERM": "xterm"})
    assert proc.returncode == -signal.SIGINT, proc.stderr  # SIGTERM became an interrupt
    assert "still running" not in proc.stdout
    text = log.read_text()
    assert HIDE_CURSOR in text and text.rstrip("\n").endswith(SHOW_CURSOR)


def test_close_open_displays_closes_what_a_command_left_open():
    out = Stream(tty=True)
    display = open_progress([ModeWork(0, 1, 1)], stream=out, clock=FakeClock())
    close_open_displays()
    assert display.closed and out.getvalue().rstrip("\n").endswith(SHOW_CURSOR)


def test_a_stream_that_fails_does_not_stop_the_run():
    class Broken(Stream):
        def write(self, s: str) -> int:
            raise BrokenPipeError("stderr closed")

    display = open_progress([ModeWork(0, 1, 1)], stream=Broken(tty=False), clock=FakeClock())
    display("serial", "round", 1, 1)  # no exception reaches the harness
    assert display.closed
    display("serial", "done", 1, 1)


def test_the_harness_drives_a_display_through_a_whole_run():
    """The harness calls the hook positionally, its ticker with client counts: a real run's
    calls give each mode's phases in order and the whole work done at the end."""
    from gpubench.run.harness import compare
    from gpubench.run.ticker import takes_client_counts
    from tests.conftest import run_config

    config = run_config(modes=("serial", "threaded"), warmup=1, rounds=2, interleave=True)
    out = Stream(tty=False)
    with open_progress(work_for(config), stream=out, clock=FakeClock(), interval_s=0) as d:
        assert takes_client_counts(d)  # the harness's ticker will feed it client counts
        results = compare(config, progress=d)
        assert d.tracker is not None
        assert d.tracker.units_done == d.tracker.units_total == 2 * 3 * 5
    assert all(m.status == "ok" for m in results.modes)
    for mode in ("serial", "threaded"):
        labels = [line.split(" | ")[0].removeprefix(f"gpubench: {mode}: ").split(",")[0]
                  for line in _lines(out) if line.startswith(f"gpubench: {mode}: ")]
        phases = [label for i, label in enumerate(labels) if i == 0 or label != labels[i - 1]]
        assert phases == ["starting", "warm-up 1/1", "round 1/2", "round 2/2", "done in 0:00"]


def test_the_ticker_reports_clients_done_while_a_round_runs():
    from gpubench.run.ticker import ClientTicker

    finished = [0]
    seen: list[tuple] = []
    got_three = threading.Event()

    def hook(mode, phase, index, total, *, clients_done=None, clients_total=None):
        seen.append((mode, phase, index, total, clients_done, clients_total))
        if clients_done == 3:
            got_three.set()

    with ClientTicker(hook, ("multi-gpu", "round", 1, 2), lambda: finished[0], 5,
                      interval_s=0.01) as ticker:
        finished[0] = 3
        assert got_three.wait(10), seen
    assert ticker.thread is not None and not ticker.thread.is_alive()  # ends with the round
    assert seen[-1] == ("multi-gpu", "round", 1, 2, 3, 5)
    assert all(s[5] == 5 for s in seen)


def test_a_hook_without_client_counts_is_never_ticked():
    from gpubench.run.ticker import ClientTicker, takes_client_counts

    calls = []

    def plain(mode, phase, index, total):
        calls.append(mode)

    assert not takes_client_counts(plain)
    assert takes_client_counts(lambda *a, **k: None)
    with ClientTicker(plain, ("serial", "round", 1, 1), lambda: 1, 1, interval_s=0.001) as t:
        assert t.thread is None
    assert calls == []
