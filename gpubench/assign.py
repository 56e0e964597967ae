"""Which device trains which client: the ``--assign`` policies.

Pure functions of the clients' expected work and the number of devices, so the harness, the
process modes and ``predict`` place clients the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpubench.config import ConfigError


def assign_clients(work: Sequence[float], k: int, policy: str) -> list[int]:
    """Device index for each client.

    ``round-robin``: client_id % k (the usual hand-written scheme).
    ``balanced``: longest work first onto the least loaded device (LPT); ties go to the
    lower client id and the lower device index, so the result is deterministic.
    ``dynamic``: the process modes hand out clients at run time (see ``WorkerPool``); here,
    the schedule that gives on equally fast devices (clients in order, each onto the least
    loaded device), for modes that must place clients in advance and for predictions.
    """
    if k < 1:
        raise ValueError("need at least one device")
    if policy == "round-robin":
        return [i % k for i in range(len(work))]
    if policy in ("balanced", "dynamic"):
        # dynamic is decided at run time by whichever worker is free first; with equally fast
        # devices that is list scheduling in client order, which is what this returns.
        load = [0.0] * k
        out = [0] * len(work)
        order = range(len(work)) if policy == "dynamic" else sorted(
            range(len(work)), key=lambda c: (-work[c], c)
        )
        for client in order:
            dev = min(range(k), key=lambda d: (load[d], d))
            out[client] = dev
            load[dev] += work[client]
        return out
    raise ConfigError(f"unknown assignment policy {policy!r}")
