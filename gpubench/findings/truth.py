"""Whether a mode did the same work as serial: the findings that make a run fail or not count.

Fields from the per-client equivalence check are read with ``getattr``: results files from
before it (and the modes that do not compare) lack them.
"""

from __future__ import annotations

from collections.abc import Callable

from gpubench.findings.base import THREAD_MODES, Facts, Finding
from gpubench.results import ModeResult, Results

# code -> the variants its facts may name (empty: none)
CODES: dict[str, tuple[str, ...]] = {
    "result-differs": ("client", "aggregate"),
    "not-reproducible": ("threads", "other"),
}


def _reproducible(mode: ModeResult) -> bool:
    return mode.reproducible


def result_differs(results: Results) -> list[Finding]:
    """A mode that computed something else than serial: its time compares nothing."""
    out = []
    for mode in results.modes:
        if mode.same_result is not False or not _reproducible(mode):
            continue
        facts: Facts = {"mode": mode.name, "tolerance": mode.tolerance,
                        "max_abs_diff": mode.max_abs_diff_vs_serial}
        client = mode.worst_client
        if client is not None:
            facts.update(variant="client", client=client,
                         round=mode.worst_round,
                         diff=mode.worst_client_diff)
        else:
            facts["variant"] = "aggregate"
        out.append(Finding("error", "result-differs", facts))
    return out


def not_reproducible(results: Results) -> list[Finding]:
    """A mode whose work is known not to repeat: neither equal to serial nor different."""
    out = []
    for mode in results.modes:
        if _reproducible(mode):
            continue
        reason = mode.not_reproducible_reason
        out.append(Finding("warning", "not-reproducible", {
            "variant": "threads" if mode.name in THREAD_MODES else "other",
            "mode": mode.name,
            "reason": {"text": str(reason)} if reason else None,
        }))
    return out


RULES: tuple[Callable[[Results], list[Finding]], ...] = (result_differs, not_reproducible)
