"""What each built-in mode is, by name: the one table its class and every reader of the
measuring side take it from, without importing the mode's (heavy or optional) module.

A mode's class says ``facts = FACTS[name]``; a mode registered without an entry here (a
plugin's, a test's) says its facts on its class alone (:func:`gpubench.modes.mode_facts`).
The harness records them with each mode's result (:attr:`gpubench.results.ModeResult.facts`),
so that the reading side never needs the modes.
"""

from __future__ import annotations

from gpubench.config import RunConfig
from gpubench.machine.devices import Device
from gpubench.results import (
    KIND_INLINE,
    KIND_PROCESS,
    KIND_THREAD,
    PLACE_EACH,
    PLACE_FIRST,
    PLACE_ONE_EACH,
    ModeFacts,
)

FACTS: dict[str, ModeFacts] = {
    "serial": ModeFacts(KIND_INLINE, PLACE_FIRST),
    "threaded": ModeFacts(KIND_THREAD, PLACE_FIRST),
    "streams": ModeFacts(KIND_THREAD, PLACE_FIRST),
    "multiprocess": ModeFacts(KIND_PROCESS, PLACE_FIRST, mps_twin="multiprocess+mps"),
    "multi-gpu": ModeFacts(KIND_PROCESS, PLACE_EACH, mps_twin="multi-gpu+mps"),
    "multiprocess+mps": ModeFacts(KIND_PROCESS, PLACE_FIRST),
    "multi-gpu+mps": ModeFacts(KIND_PROCESS, PLACE_EACH),
    "vectorized": ModeFacts(KIND_PROCESS, PLACE_ONE_EACH),
    # Ray's raylet, GCS and workers; Flower's engine on Ray: daemons that outlive a round.
    # Flower's actors go where Ray's resources allow; each-device is what the plan assumes.
    "ray": ModeFacts(KIND_PROCESS, PLACE_EACH, daemons=True),
    "flower": ModeFacts(KIND_PROCESS, PLACE_EACH, daemons=True),
}


def placed(
    facts: ModeFacts, devices: tuple[Device, ...], config: RunConfig
) -> tuple[tuple[Device, ...], int]:
    """The devices a mode's workers go to, and how many workers each gets (before the
    workers without clients are dropped)."""
    if facts.placement == PLACE_FIRST:
        return devices[:1], 1 if facts.kind == KIND_INLINE else config.workers
    if facts.placement == PLACE_ONE_EACH:
        return devices, 1
    return devices, config.workers_per_device
