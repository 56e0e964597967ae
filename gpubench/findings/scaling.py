"""Several devices and whole runs: balance, scaling, start-up, round-to-round noise."""

from __future__ import annotations

import math
from collections.abc import Callable

from gpubench.findings.base import (
    GOOD_SCALING,
    MIN_COLD_START_S,
    MULTI_DEVICE_MODES,
    POOR_SCALING,
    UNBALANCED,
    Facts,
    Finding,
    device_client_counts,
    device_train_times,
    measured_rounds,
    ok_mode,
    speedup,
)
from gpubench.results import ModeResult, Results
from gpubench.stats import NOISY_SPREAD, summarize

CODES: dict[str, tuple[str, ...]] = {
    "unbalanced-devices": ("balanced", "dynamic", "static"),
    "scaling-good": (),
    "scaling-poor": (),
    "cold-start-dominates": (),
    "wide-spread": (),
    "cpu-slots": (),
    "round-steps": (),
}


def unbalanced(results: Results) -> list[Finding]:
    out = []
    assign = results.config.get("assign") or "round-robin"
    for mode in results.modes:
        if not mode.ok or len(mode.devices) < 2:
            continue
        per = device_train_times(mode)
        total = sum(per.values())
        if total <= 0:
            continue
        busiest = max(per, key=lambda d: per[d])
        ratio = per[busiest] / (total / len(per))
        if ratio <= UNBALANCED:
            continue
        rounds = measured_rounds(mode) or 1
        counts = device_client_counts(mode)
        out.append(Finding("warning", "unbalanced-devices", {
            "variant": assign if assign in ("balanced", "dynamic") else "static",
            "mode": mode.name, "assign": assign, "busiest": busiest, "ratio": ratio,
            "devices": [{"device": d, "train_s": per[d] / rounds,
                         "clients": counts.get(d, 0) // rounds} for d in per],
        }))
    return out


def scaling(results: Results) -> list[Finding]:
    out = []
    for name in MULTI_DEVICE_MODES:
        mode = ok_mode(results, name)
        if mode is None or len(mode.devices) < 2 or mode.median_round_s is None:
            continue
        sp = speedup(results, mode)
        if sp is None:
            continue
        k = len(mode.devices)
        facts: Facts = {"mode": name, "speedup": sp, "devices": k,
                        "efficiency_pct": sp / k * 100}
        if sp / k >= GOOD_SCALING:
            out.append(Finding("info", "scaling-good", facts))
            continue
        if sp / k >= POOR_SCALING:
            continue
        per = device_train_times(mode)
        rounds = measured_rounds(mode)
        facts["split"] = None
        if rounds and any(per.values()):
            busiest = max(per.values()) / rounds
            rest = max(mode.median_round_s - busiest, 0.0)
            facts["split"] = {"round_s": mode.median_round_s, "busiest_s": busiest,
                              "rest_s": rest, "rest_pct": rest / mode.median_round_s * 100}
        out.append(Finding("warning", "scaling-poor", facts))
    return out


def repaid(results: Results, mode: ModeResult) -> Facts | None:
    """When a mode's extra start-up, against serial's, is won back by its faster rounds.

    A round's gain is serial's median round less the same round at the mode's speed
    (``Results.speed``, the ratio every page shows). ``rounds`` is at least 1: a start-up no
    longer than serial's is repaid at once, and a mode no faster per round never repays it;
    neither is a count of rounds.
    """
    serial = ok_mode(results, "serial")
    speed = results.speed(mode.name) if mode.name != "serial" else None
    if serial is None or speed is None or not serial.median_round_s:
        return None
    gain = serial.median_round_s * (1.0 - 1.0 / speed.ratio)
    extra = (mode.cold_start_s or 0.0) - (serial.cold_start_s or 0.0)
    if extra <= 0:
        return {"variant": "at-once"}
    if gain <= 0:
        return {"variant": "never"}
    return {"variant": "after", "rounds": max(1, math.ceil(extra / gain))}


def cold_start(results: Results) -> list[Finding]:
    modes = []
    for mode in results.modes:
        if not mode.ok or not mode.round_times_s or mode.cold_start_s is None:
            continue
        n = len(mode.round_times_s)
        rounds_s = n * (mode.median_round_s or 0.0)
        cold = mode.cold_start_s
        if cold < MIN_COLD_START_S or cold <= rounds_s:
            continue
        modes.append({
            "mode": mode.name, "cold_s": cold, "rounds": n, "round_s": mode.median_round_s,
            "rounds_s": rounds_s, "ratio": cold / rounds_s if rounds_s > 0 else None,
            "repaid": repaid(results, mode),
        })
    return [Finding("warning", "cold-start-dominates", {"modes": modes})] if modes else []


def spread(results: Results) -> list[Finding]:
    modes = []
    for mode in results.modes:
        if not mode.ok or len(mode.round_times_s) < 2:
            continue
        s = summarize(mode.round_times_s)
        if s.noisy:
            modes.append({"mode": mode.name, "spread_pct": s.spread * 100, "iqr_s": s.iqr,
                          "median_s": s.median, "rounds": s.n})
    if not modes:
        return []
    rounds = results.config.rounds
    more = ({"variant": "count", "rounds": max(int(rounds) * 3, 10)}
            if isinstance(rounds, int) and not isinstance(rounds, bool) else {"variant": "more"})
    return [Finding("warning", "wide-spread", {
        "limit_pct": NOISY_SPREAD * 100, "modes": modes, "more": more,
        "interleave": None if results.config.interleave else {},
    })]


def round_steps(results: Results) -> list[Finding]:
    """A mode whose engine polls (flower: Flower's server and engine poll for messages every
    0.1 s) times its rounds in steps of that period: up to one step of each round is waiting
    for the next poll, which a ratio against serial counts as the mode's own time."""
    out = []
    for mode in results.modes:
        step = (mode.extra.engine or {}).get("round_step_s")
        if not mode.ok or not mode.median_round_s or not isinstance(step, (int, float)):
            continue
        if isinstance(step, bool) or step <= 0:
            continue
        out.append(Finding("info", "round-steps", {
            "mode": mode.name, "engine": (mode.extra.engine or {}).get("engine") or mode.name,
            "step_s": float(step), "round_s": mode.median_round_s,
            "share_pct": min(100.0, step / mode.median_round_s * 100),
        }))
    return out


def cpu_slots(results: Results) -> list[Finding]:
    if not results.on_cpu_slots:
        return []
    devices = results.device_ids
    cores = [d.get("cores") for d in results.devices if isinstance(d, dict)]
    layout = " | ".join(",".join(str(c) for c in cs) for cs in cores if cs)
    return [Finding("info", "cpu-slots", {
        "slots": len(devices), "layout": {"cores": layout} if layout else None,
    })]


RULES: tuple[Callable[[Results], list[Finding]], ...] = (
    unbalanced,
    scaling,
    cold_start,
    spread,
    round_steps,
    cpu_slots,
)
