"""The conditions a run was measured under: other programs' load.

A mode whose measured rounds (or serial's, which its speedup divides) ran beside other
programs taking more than ``OTHER_LOAD_LIMIT_PCT`` of a device gets one ``busy-machine``
finding naming them, and no speed finding at all: a slow round there says nothing about the
mode (:func:`quiet_view` leaves such modes out of the rules that read speed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from gpubench.findings.base import Finding
from gpubench.results import OTHER_LOAD_LIMIT_PCT, Results

CODES: dict[str, tuple[str, ...]] = {"busy-machine": ("named",)}


def busy_machine(results: Results) -> list[Finding]:
    """One warning per disturbed mode, with the device, the share and the programs named."""
    out = []
    for mode in results.modes:
        d = results.disturbance(mode.name)
        if d is None or d.mode != mode.name:
            continue  # serial's own disturbance is said once, for serial
        facts = {
            "mode": mode.name, "during": d.mode, "device": d.device, "other_pct": d.pct,
            "limit_pct": OTHER_LOAD_LIMIT_PCT,
            "processes": [{"pid": p.pid, "name": p.name, "pct": p.pct} for p in d.processes[:3]],
        }
        if d.processes:
            facts["variant"] = "named"
        out.append(Finding("warning", "busy-machine", facts))
    return out


def quiet_view(results: Results) -> Results:
    """The run as the speed rules may read it: modes disturbed by other programs' load left
    out (all of them, serial included, when serial's rounds were disturbed)."""
    kept = tuple(m for m in results.modes if results.disturbance(m.name) is None)
    return results if len(kept) == len(results.modes) else replace(results, modes=kept)


RULES: tuple[Callable[[Results], list[Finding]], ...] = (busy_machine,)
