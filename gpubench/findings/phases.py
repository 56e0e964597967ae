"""Where each client's time goes, and which phase (or setting) decides a mode's ratio.

A client's ``phases`` (setup, data, copy, compute, write, aggregate) add up to its duration.
``phase_means`` is a mode's mean client time by phase (one device's clients); the rules name
the phase that grew most against serial when a mode is slower, and read the counterfactual
rows (``gpubench.run.explain``: the same rounds again with one setting changed) to say which
setting moved the threaded ratio, and by how much.
"""

from __future__ import annotations

from collections.abc import Callable

from gpubench.findings.base import Facts, Finding, ok_mode, speedup
from gpubench.results import PHASES, ModeResult, Results
from gpubench.stats import SLOWER

CODES: dict[str, tuple[str, ...]] = {
    "phase-decides": (),
    "setting-moves-threads": ("torch_threads", "loader_workers"),
}

# A setting "moved" the ratio when it changed the speedup by more than this share of it. The
# rows of a short CPU-slot run spread by 5-12% from round to round (IQR/median), so a smaller
# change (e.g. 0.63x -> 0.67x, measured) is noise, not an explanation.
MOVED = 0.15


def _device_key(device: str) -> tuple[str, int]:
    kind, _, index = device.partition(":")
    return kind, int(index) if index.isdigit() else 0


def phase_means(mode: ModeResult, device: str | None = None) -> dict[str, float] | None:
    """Mean seconds per client in each phase over the measured rounds, for the clients of
    ``device`` (default: the mode's first device); None when no client recorded phases."""
    clients = [c for r in mode.rounds if not r.warmup for c in r.clients if c.phases]
    if not clients:
        return None
    if device is None:
        device = min((c.device for c in clients), key=_device_key)
    mine = [c for c in clients if c.device == device] or clients
    names = list(PHASES) + sorted({k for c in mine for k in c.phases} - set(PHASES))
    return {p: sum(c.phases.get(p, 0.0) for c in mine) / len(mine) for p in names}


def largest_phase(mode: ModeResult) -> tuple[str, float] | None:
    """The phase a client of ``mode`` spends most of its time in, and its share (0..1)."""
    means = phase_means(mode)
    if not means:
        return None
    total = sum(means.values())
    name = max(means, key=lambda p: means[p])
    return name, (means[name] / total if total > 0 else 0.0)


def is_counterfactual(mode: ModeResult) -> bool:
    return "@" in mode.name


def phase_decides(results: Results) -> list[Finding]:
    """A mode slower than serial: the phase whose client time grew most against serial's."""
    serial = ok_mode(results, "serial")
    base = phase_means(serial) if serial is not None else None
    if serial is None or not base:
        return []
    out = []
    for mode in results.modes:
        if mode.name == "serial" or not mode.ok or is_counterfactual(mode):
            continue
        sp = speedup(results, mode)
        means = phase_means(mode)
        if sp is None or sp >= SLOWER or not means:
            continue
        grown = {p: means.get(p, 0.0) - base.get(p, 0.0) for p in PHASES}
        phase = max(grown, key=lambda p: grown[p])
        if grown[phase] <= 0:
            continue
        total = sum(means.values())
        out.append(Finding("info", "phase-decides", {
            "mode": mode.name, "speedup": sp, "phase": {"variant": phase},
            "mode_s": means[phase], "serial_s": base.get(phase, 0.0),
            "share_pct": 100.0 * means[phase] / total if total > 0 else 0.0,
            "client_s": total, "serial_client_s": sum(base.values()),
        }))
    return out


def setting_moves_threads(results: Results) -> list[Finding]:
    """What each counterfactual try did to the threaded ratio (the run measured it)."""
    out = []
    threaded = ok_mode(results, "threaded")
    before = speedup(results, threaded) if threaded is not None else None
    for record in results.config.get("counterfactuals") or []:
        if not isinstance(record, dict):
            continue
        names = record.get("modes") or []
        row = next((results.mode(n) for n in names if str(n).startswith("threaded@")), None)
        serial_row = next((results.mode(n) for n in names if str(n).startswith("serial@")), None)
        if row is None or not row.ok or before is None:
            continue
        after = speedup(results, row)
        if after is None:
            continue
        serial_after = speedup(results, serial_row) if serial_row is not None and serial_row.ok \
            else None
        change = after - before
        facts: Facts = {
            "variant": record.get("setting"), "value": record.get("value"),
            "was": record.get("was"), "cores": record.get("cores"),
            "device": record.get("device"), "workers": threaded.workers if threaded else None,
            "before": before, "after": after, "change": change,
            "serial": {"speedup": serial_after} if serial_after is not None else None,
            "effect": {"variant": "moved" if abs(change) > MOVED * max(before, 1e-9)
                       else "unmoved"},
            "differs": {} if row.same_result is False else None,
        }
        out.append(Finding("warning" if after >= 1 > before else "info",
                           "setting-moves-threads", facts))
    return out


RULES: tuple[Callable[[Results], list[Finding]], ...] = (setting_moves_threads, phase_decides)
