"""How long a mode's clients waited for a CPU (``ClientTiming.wait_s``, the run-queue delay
of their training threads) against their compute: several workers on one device taking
turns, measured rather than inferred from a grown ``compute``."""

from __future__ import annotations

from collections.abc import Callable

from gpubench.findings.base import Finding
from gpubench.results import ModeResult, Results

CODES: dict[str, tuple[str, ...]] = {"clients-waited": ("shared", "alone")}

# A share of compute worth naming: a quiet core's run-queue delay stays within a few %.
WAITED = 0.10


def wait_share(mode: ModeResult) -> tuple[float, float, float] | None:
    """Mean wait and compute seconds per client over the measured rounds, and wait's share
    of compute; None when waiting was not measured."""
    clients = [c for r in mode.rounds if not r.warmup for c in r.clients
               if c.wait_s is not None and c.phases.get("compute")]
    if not clients:
        return None
    wait = sum(c.wait_s or 0.0 for c in clients) / len(clients)
    compute = sum(c.phases["compute"] for c in clients) / len(clients)
    return wait, compute, wait / compute


def workers_per_device(mode: ModeResult) -> int:
    """The most workers that trained clients on one device."""
    on: dict[str, set[int]] = {}
    for r in mode.rounds:
        for c in r.clients:
            on.setdefault(c.device, set()).add(c.worker)
    return max((len(w) for w in on.values()), default=1)


def clients_waited(results: Results) -> list[Finding]:
    out = []
    for mode in results.modes:
        got = wait_share(mode) if mode.ok else None
        if got is None or got[2] < WAITED:
            continue
        wait, compute, share = got
        workers = workers_per_device(mode)
        out.append(Finding("info", "clients-waited", {
            "variant": "shared" if workers > 1 else "alone", "mode": mode.name,
            "workers": workers, "wait_pct": 100.0 * share, "wait_s": wait,
            "compute_s": compute,
        }))
    return out


RULES: tuple[Callable[[Results], list[Finding]], ...] = (clients_waited,)
