"""Where a page's numbers came from, read from its results files alone.

Every page (report, FAQ) states per results file: the device (GPU model, driver and UUID, or
the CPU slots and their cores), the measured and warm-up rounds, whether the modes were
interleaved, the result check's tolerance, and the command. A page built from runs on
different devices says so, once, above the table: each row then names its own device. Below
the table, one line per file says which run it is (when, on which host, by which gpubench
version and commit) and, for a file that lacks what gpubench records now (the commit, the
noise floor behind the tolerance, the schedule, other programs' load), that it predates
those records: a page rendered today from an old file is still that old run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gpubench.report import tables
from gpubench.report.i18n import check_lang, text
from gpubench.results import Results


def _gpus(results: Results) -> list[dict[str, Any]]:
    gpus = results.environment.get("gpus")
    entries = [g for g in gpus if isinstance(g, dict)] if isinstance(gpus, list) else []
    if not entries:
        entries = [d for d in results.devices if isinstance(d, dict) and d.get("kind") == "cuda"]
    return entries


def device_key(results: Results) -> tuple[str, ...]:
    """What identifies the hardware of a run: its GPUs' UUIDs, or its CPU slots' cores."""
    gpus = _gpus(results)
    if gpus:
        return tuple(str(g.get("uuid") or g.get("pci_bus_id") or g.get("id")) for g in gpus)
    slots = [d for d in results.devices if isinstance(d, dict)]
    host = str(results.environment.get("hostname") or "")
    return (host, *(f"{d.get('id')}={d.get('cores')}" for d in slots))


def gpu_names(results: Results) -> list[str]:
    """The GPU models of a run (``NVIDIA H200``), one per GPU."""
    return [str(g.get("name")) for g in _gpus(results) if g.get("name")]


def device_text(results: Results, lang: str) -> str:
    """``NVIDIA H200 (driver 580.159.04, GPU-bad090f7-…)`` or ``2 CPU slots (cores 0 | 1)``."""
    check_lang(lang)
    gpus = _gpus(results)
    driver = results.environment.get("driver")
    if gpus:
        items = []
        for g in gpus:
            ident = g.get("uuid") or g.get("pci_bus_id") or g.get("id") or "?"
            items.append(text("prov.gpu", lang, name=g.get("name") or "GPU",
                              driver=driver or "?", uuid=ident))
        return "; ".join(items)
    slots = [d for d in results.devices if isinstance(d, dict)]
    if slots:
        cores = " / ".join(",".join(str(c) for c in d.get("cores") or ()) or "?" for d in slots)
        cpu = results.environment.get("cpu_model") or "?"
        return text("prov.cpu", lang, slots=len(slots), cores=cores, cpu=cpu)
    return "?"


def _yes_no(value: Any, lang: str) -> str:
    if value is None:
        return "—"
    return text("prov.yes" if value else "prov.no", lang)


# What a results file of today records, and how to tell a file that predates it.
RECORDS: tuple[tuple[str, Callable[[Results], bool]], ...] = (
    ("commit", lambda r: bool(r.environment.get("git_commit"))),
    ("noise_floor", lambda r: r.config.noise_floor is not None),
    ("schedule", lambda r: r.config.schedule is not None),
    ("other_load", lambda r: any(m.other_load_pct for m in r.modes)),
)


def missing_records(results: Results) -> list[str]:
    """The records of :data:`RECORDS` that ``results`` lacks (catalogue ``prov.missing.*``)."""
    return [name for name, present in RECORDS if not present(results)]


def run_line(label: str, results: Results, lang: str) -> str:
    """Which run a results file is: when, where and by which gpubench; and what it predates."""
    env = results.environment
    commit = str(env.get("git_commit") or "")
    line = text("prov.run", lang, label=label,
                when=results.created_utc[:16].replace("T", " ") or "?",
                host=env.get("hostname") or "?", device=device_text(results, lang),
                version=results.tool_version or "?",
                commit=commit[:12] if commit else text("prov.no_commit", lang))
    missing = missing_records(results)
    if missing:
        sep, space = ("、", "") if lang == "zh" else (", ", " ")
        names = sep.join(text(f"prov.missing.{m}", lang) for m in missing)
        line += space + text("prov.predates", lang, missing=names)
    return line


def provenance_table(runs: Sequence[tuple[str, Results]], lang: str) -> str:
    """One row per results file: label, device, rounds, warm-up, interleaved, tolerance."""
    headers = [text(f"prov.col.{k}", lang)
               for k in ("run", "device", "rounds", "warmup", "interleaved", "tolerance", "when")]
    rows = []
    for label, r in runs:
        c = r.config
        tolerance = c.tolerance_used
        rows.append([label, device_text(r, lang), "—" if c.rounds is None else str(c.rounds),
                     "—" if c.warmup is None else str(c.warmup), _yes_no(c.interleave, lang),
                     "—" if tolerance is None else f"{tolerance:g}",
                     r.created_utc[:16].replace("T", " ") or "—"])
    return tables.render(rows, headers, "github")


def provenance_section(
    runs: Sequence[tuple[str, Results]], lang: str, *, commands: bool = True
) -> list[str]:
    """The provenance block: a note when the runs were on different devices, the table, and
    each run's command."""
    out = []
    if len({device_key(r) for _, r in runs}) > 1:
        out.append(text("prov.different_devices", lang))
    out.append(provenance_table(runs, lang))
    out.append("\n".join(f"- {run_line(label, r, lang)}" for label, r in runs))
    lines = [(label, r.command.strip()) for label, r in runs if r.command.strip()]
    if commands and lines:
        out.append("```\n" + "\n".join(
            f"# {label}\n{command}" if len(runs) > 1 else command for label, command in lines
        ) + "\n```")
    return out
