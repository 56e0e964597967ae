"""While a round runs, how many of its clients have finished, told to the progress hook.

The harness's only tie to a display: a hook that takes ``clients_done=``/``clients_total=``
is called every ``interval_s`` from a thread of its own; a plain hook is left alone.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Callable


def takes_client_counts(hook: Callable[..., None]) -> bool:
    """Whether a progress hook takes ``clients_done=``/``clients_total=`` (a display does;
    a plain ``progress(mode, phase, index, total)`` does not)."""
    try:
        params = inspect.signature(hook).parameters
    except (TypeError, ValueError):
        return False
    return "clients_done" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


class ClientTicker:
    """While a round runs, tells the progress hook ``hook(*where, clients_done=,
    clients_total=)`` how many clients have finished, every ``interval_s``: ``done()`` counts
    them (the harness: the round's fingerprint rows filled so far). A hook that takes no
    counts is left alone."""

    def __init__(self, hook: Callable[..., None], where: tuple[str, str, int, int],
                 done: Callable[[], int], total: int, interval_s: float = 1.0) -> None:
        self.hook, self.where, self.done, self.total = hook, where, done, total
        self.interval_s = interval_s
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def _tick(self) -> None:
        while not self.stop.wait(self.interval_s):
            with contextlib.suppress(Exception):  # the display never stops a round
                self.hook(*self.where, clients_done=self.done(),
                          clients_total=self.total)

    def __enter__(self) -> ClientTicker:
        if takes_client_counts(self.hook):
            self.thread = threading.Thread(target=self._tick, name="gpubench-ticker",
                                           daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
