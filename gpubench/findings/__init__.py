"""Findings: what a run's numbers (or the doctor's machine) say, as data.

``compute_findings(results)`` reads a :class:`Results` alone (a saved JSON file on a machine
without a GPU is enough) and returns :class:`Finding` objects: a level, a code and the facts
behind it. Nothing here measures, imports torch or holds a word of English or Chinese:
``gpubench.report.findings`` renders findings from the catalogue (``report/catalogue.toml``).
"""

from __future__ import annotations

from collections.abc import Callable

from gpubench.findings import (
    conditions,
    drift,
    machine,
    mps,
    one_device,
    phases,
    scaling,
    settings,
    truth,
    waiting,
)
from gpubench.findings.base import LEVELS, Finding, by_level
from gpubench.findings.machine import machine_findings
from gpubench.results import Results

__all__ = ["CODES", "LEVELS", "RULES", "Finding", "compute_findings", "machine_findings"]

# The order findings of one level appear in. The rules that read speed see the run without
# the modes that other programs' load disturbed (``conditions.quiet_view``).
RESULT_RULES: tuple[Callable[[Results], list[Finding]], ...] = (
    truth.RULES + conditions.RULES + settings.RULES
)
SPEED_RULES: tuple[Callable[[Results], list[Finding]], ...] = (
    drift.RULES + phases.RULES + waiting.RULES + one_device.RULES + scaling.RULES + mps.RULES
)
RULES = RESULT_RULES + SPEED_RULES

# Every code a rule can emit -> the variants its facts may name.
CODES: dict[str, tuple[str, ...]] = {
    **truth.CODES, **conditions.CODES, **drift.CODES, **phases.CODES, **one_device.CODES, **scaling.CODES,
    **machine.CODES, **mps.CODES, **settings.CODES, **waiting.CODES,
}


def compute_findings(results: Results) -> list[Finding]:
    """Every finding the run's numbers support: errors first, then warnings, then infos."""
    quiet = conditions.quiet_view(results)
    found = [f for rule in RESULT_RULES for f in rule(results)]
    return by_level(found + [f for rule in SPEED_RULES for f in rule(quiet)])
