"""Whether a mode did the same work as serial: the findings that make a run fail or not count.

A client beyond the tolerance that was adjudicated and lands within its valid variants'
spread (``ModeExtra.adjudication``, see ``gpubench.run.adjudicate``) agrees: the mode is not
failed for it, an info finding names it, and a mode that fails names a client that differs.
"""

from __future__ import annotations

from collections.abc import Callable

from gpubench.findings.base import Facts, Finding, runs_threads
from gpubench.results import ClientAdjudication, ModeResult, Results

# code -> the variants its facts may name (empty: none)
CODES: dict[str, tuple[str, ...]] = {
    "result-differs": ("client", "aggregate"),
    "not-reproducible": ("threads", "other"),
    "adjudicated": (),
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
        worst = _worst_differing(mode)
        if worst is not None:
            client, round_, diff = worst
            facts.update(variant="client", client=client, round=round_, diff=diff)
        else:
            facts["variant"] = "aggregate"
        out.append(Finding("error", "result-differs", facts))
    return out


def _agreeing(mode: ModeResult) -> tuple[ClientAdjudication, ...]:
    adjudication = mode.extra.adjudication
    return adjudication.agreeing if adjudication is not None else ()


def _worst_differing(mode: ModeResult) -> tuple[int, int | None, float | None] | None:
    """(client, round, diff) of the worst client not adjudicated to agree: the mode's worst
    client unless that one agreed."""
    if mode.worst_client is None:
        return None
    agreed = {(c.client, c.round) for c in _agreeing(mode)}
    if (mode.worst_client, mode.worst_round) not in agreed:
        return mode.worst_client, mode.worst_round, mode.worst_client_diff
    rest = [
        (d, client, index)
        for index, r in enumerate(mode.rounds)
        for client, d in enumerate(r.client_diffs)
        if d is not None and (client, index) not in agreed
    ]
    if not rest:
        return mode.worst_client, mode.worst_round, mode.worst_client_diff
    diff, client, index = max(rest)
    return client, index, diff


def adjudicated(results: Results) -> list[Finding]:
    """Clients beyond the tolerance that land within their valid variants' spread: a branch
    taken otherwise by correct arithmetic, not a wrong result."""
    out = []
    for mode in results.modes:
        agreeing = sorted(_agreeing(mode), key=lambda c: -c.diff)
        if not agreeing or not _reproducible(mode):
            continue
        c = agreeing[0]
        out.append(Finding("info", "adjudicated", {
            "mode": mode.name, "client": c.client, "round": c.round, "diff": c.diff,
            "tolerance": mode.tolerance, "spread": c.spread, "allowed": c.allowed,
            "variants": len(c.variants),
            "more": {"n": len(agreeing) - 1} if len(agreeing) > 1 else None,
        }))
    return out


def not_reproducible(results: Results) -> list[Finding]:
    """A mode whose work is known not to repeat: neither equal to serial nor different."""
    out = []
    for mode in results.modes:
        if _reproducible(mode):
            continue
        reason = mode.not_reproducible_reason
        out.append(Finding("warning", "not-reproducible", {
            "variant": "threads" if runs_threads(mode) else "other",
            "mode": mode.name,
            "reason": {"text": str(reason)} if reason else None,
        }))
    return out


RULES: tuple[Callable[[Results], list[Finding]], ...] = (
    result_differs, not_reproducible, adjudicated
)
