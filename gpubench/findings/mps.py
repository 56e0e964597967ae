"""What CUDA MPS did to a process mode: ``m+mps`` against ``m``, measured side by side."""

from __future__ import annotations

from gpubench import stats
from gpubench.findings.base import NO_FASTER, Facts, Finding, ok_mode
from gpubench.results import Results, facts_of, paired_rounds

CODES: dict[str, tuple[str, ...]] = {"mps-effect": ("faster", "slower", "same")}


def mps_effect(results: Results) -> list[Finding]:
    """With ``--mps on``: is the mode under MPS faster than the same mode time-sliced, with
    the one decision of :mod:`gpubench.stats` (paired rounds in an interleaved run)."""
    out = []
    for row in results.modes:
        plain_name, twin_name = row.name, facts_of(row).mps_twin
        if twin_name is None:
            continue
        plain, twin = ok_mode(results, plain_name), ok_mode(results, twin_name)
        if plain is None or twin is None or not plain.round_times_s or not twin.round_times_s:
            continue
        pairs = paired_rounds(plain, twin) if results.config.interleave else None
        rounds = pairs or stats.Rounds.of(plain.round_times_s, twin.round_times_s)
        faster = stats.compare_speed(rounds, at_least=NO_FASTER).holds
        slower = stats.compare_speed(rounds, at_most=stats.SLOWER).holds
        facts: Facts = {
            "variant": "faster" if faster else "slower" if slower else "same",
            "mode": plain_name, "twin": twin_name, "ratio": stats.speedup(rounds),
            "workers": twin.workers,
        }
        out.append(Finding("info" if faster else "warning" if slower else "info",
                           "mps-effect", facts))
    return out


RULES = (mps_effect,)
