"""The markdown report: one page per set of results files, plots beside it, linked relatively.

``format_report`` turns results (plus the plots already written) into text and nothing else;
``write_report`` writes the plots and the page. The page can be pasted into the user's FAQ
documents as it is: GitHub-flavoured markdown tables and relative image links.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpubench.output import write_atomic
from gpubench.report import measures, tables
from gpubench.report.findings import finding_text, level_label
from gpubench.report.i18n import check_lang, mode_label, monitor_note, text
from gpubench.report.plots import Plot, write_plots
from gpubench.report.provenance import provenance_section
from gpubench.results import Results


@dataclass(frozen=True)
class FindingView:
    """A finding as the page shows it, already in the page's language."""

    level: str
    message: str
    hint: str = ""
    code: str = ""


def findings_for(results: Results, lang: str) -> list[FindingView]:
    """The run's findings (``gpubench.findings``), in words from the catalogue."""
    from gpubench.findings import compute_findings

    views = []
    for f in compute_findings(results):
        message, hint = finding_text(f, lang)
        views.append(FindingView(f.level, message, hint, f.code))
    return views


# --- small markdown helpers ---------------------------------------------------------------


def _cell(value: Any) -> str:
    """A value as one markdown table cell: no newlines, pipes escaped."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        text_value = ", ".join(str(v) for v in value) or "—"
    elif isinstance(value, dict):
        text_value = json.dumps(value, sort_keys=True, ensure_ascii=False)
    else:
        text_value = str(value)
    return text_value.replace("\n", " ").replace("|", "\\|")


def _key_value_table(data: Mapping[str, Any], lang: str) -> str:
    rows = [[_cell(k), _cell(data[k])] for k in sorted(data)]
    return tables.render(rows, [text("page.key", lang), text("page.value", lang)], "github")


def _devices_table(results: Results) -> str | None:
    entries = [e for e in results.devices if isinstance(e, dict)]
    if not entries:
        return None
    keys = sorted({k for e in entries for k in e}, key=lambda k: (k != "id", k))
    rows = [[_cell(e.get(k)) for k in keys] for e in entries]
    return tables.render(rows, keys, "github")


def _times(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values) or "—"


# --- sections -------------------------------------------------------------------------------


def _marks_lines(runs: list[Results], lang: str) -> list[str]:
    legend = tables.marks_legend(runs, lang)
    return [] if legend is None else [legend]


def _monitor_lines(results: Results, lang: str) -> list[str]:
    if not isinstance(results.monitor, dict):
        return [text("page.no_monitor", lang)]
    monitor = results.monitor_record
    backend = monitor.backend or "?"
    interval = monitor.interval_s
    lines = [text("page.monitor", lang, backend=backend, interval=_cell(interval))]
    what = (
        text(f"page.what.{backend}", lang)
        if backend in ("nvml", "host")
        else text("page.what.other", lang, backend=backend)
    )
    lines.append(text("page.busy_legend", lang, what=what))
    mem_what = text(
        f"page.mem_what.{backend}" if backend in ("nvml", "host") else "page.mem_what.workers", lang
    )
    lines.append(text("page.mem_note", lang, what=mem_what))
    if monitor.note:
        lines.append(f"*{_cell(monitor_note(monitor.note, lang))}*")
    return lines


def _details(results: Results, lang: str) -> list[str]:
    cpu = results.on_cpu_slots
    headers = [
        text("col.mode", lang),
        text("det.status", lang),
        text("col.devices", lang),
        text("det.workers", lang),
        text("col.cold", lang),
        text("det.warmup", lang),
        text("det.rounds", lang),
        text("col.round", lang),
        text("col.spread", lang),
        text("det.diff", lang),
    ]
    rows = []
    for m in results.modes:
        spread = measures.relative_spread(m.round_times_s)
        rows.append(
            [
                mode_label(m.name, lang, cpu_slots=cpu, devices=len(m.devices)),
                text(f"status.{m.status}", lang),
                ", ".join(m.devices) or "—",
                str(m.workers),
                "—" if m.cold_start_s is None else f"{m.cold_start_s:.2f}",
                _times(m.warmup_times_s),
                _times(m.round_times_s),
                "—" if m.median_round_s is None else f"{m.median_round_s:.3f}",
                "—" if spread is None else f"{spread * 100:.1f}%",
                tables.same_result_cell(results, m, lang) if m.ok
                else tables.check_cell(results, m, lang),
            ]
        )
    out = [tables.render(rows, headers, "github")]
    notes = [(m, n) for m in results.modes for n in m.notes]
    if notes:
        out.append(f"**{text('det.notes', lang)}**\n")
        out.append("\n".join(f"- {mode_label(m.name, lang, cpu_slots=cpu, devices=len(m.devices))}: {n}" for m, n in notes))
    return out


def _failed(results: Results, lang: str) -> list[str]:
    cpu = results.on_cpu_slots
    bad = [m for m in results.modes if not m.ok]
    if not bad:
        return [text("page.no_failed", lang)]
    out = []
    for m in bad:
        error = (m.error or "").strip()
        first, _, rest = error.partition("\n")
        status = text(f"status.{m.status}", lang)
        out.append(f"- **{mode_label(m.name, lang, cpu_slots=cpu, devices=len(m.devices))}** ({status}): {first or '—'}")
        if rest.strip():
            out.append(
                "\n  ```\n" + "\n".join(f"  {line}" for line in error.splitlines()) + "\n  ```"
            )
    return ["\n".join(out)]


def _findings(views: list[FindingView] | None, lang: str) -> list[str]:
    if views is None:
        return [text("page.findings_unavailable", lang)]
    if not views:
        return [text("page.no_findings", lang)]
    lines = []
    for f in views:
        lines.append(f"- **{level_label(f.level, lang)}**: {f.message}")
        if f.hint:
            lines.append(f"  *{text('page.hint', lang)}:* {f.hint}")
    return ["\n".join(lines)]


def _plots(plots: Sequence[Plot], lang: str) -> list[str]:
    out = []
    if any(p.path is not None and p.lang != lang for p in plots):
        out.append(f"*{text('page.font_fallback', lang)}*")
    for p in plots:
        if p.path is not None:
            out.append(f"![{p.title}]({p.path.name})")
        else:
            out.append(f"*{text('page.plot_skipped', lang, plot=p.title, reason=p.reason)}*")
    return out


def _run_sections(
    results: Results,
    plots: Sequence[Plot],
    findings: list[FindingView] | None,
    lang: str,
    level: str,
    trace: str | None = None,
) -> list[str]:
    out: list[str] = []
    if results.interrupted:
        out.append(text("page.interrupted", lang))

    def section(key: str, body: list[str]) -> None:
        out.append(f"{level} {text(key, lang)}")
        out.extend(body)

    # What a reader wants first: the table and what it means; then how it was measured.
    section(
        "page.performance",
        [tables.format_performance_table(results, lang, "github"), text("page.speed_legend", lang)]
        + _marks_lines([results], lang) + _monitor_lines(results, lang),
    )
    section("page.findings", _findings(findings, lang))
    trace_line = [] if trace is None else [
        text("page.trace", lang, name=Path(trace).name, path=trace)]
    section("page.plots", _plots(plots, lang) + trace_line)
    section("page.details", _details(results, lang))
    section("page.failed", _failed(results, lang))
    command = results.command.strip()
    section(
        "page.reproduce", [f"```\n{command}\n```" if command else text("page.none_recorded", lang)]
    )
    config = results.config
    section(
        "page.configuration",
        [_key_value_table(config, lang)] if config else [text("page.none_recorded", lang)],
    )
    # GPUs and NVML's view are in the devices table below; the rest are one-line values.
    env = {k: v for k, v in results.environment.items() if k not in ("gpus", "nvml")}
    if results.created_utc:
        env.setdefault("created_utc", results.created_utc)
    if results.tool_version:
        env.setdefault("gpubench", results.tool_version)
    section(
        "page.environment",
        [_key_value_table(env, lang)] if env else [text("page.none_recorded", lang)],
    )
    devices = _devices_table(results)
    if devices:
        out.append(f"**{text('page.devices', lang)}**")
        out.append(devices)
    return out


def default_label(results: Results) -> str:
    case = results.config.case or "?"
    devices = measures.device_ids(results)
    return f"{case}, {', '.join(devices)}" if devices else str(case)


def format_report(
    runs: Sequence[tuple[str, Results]],
    *,
    lang: str = "en",
    plots: Sequence[Sequence[Plot]] | None = None,
    findings: Callable[[Results, str], list[FindingView] | None] = findings_for,
    traces: Sequence[str | None] | None = None,
) -> str:
    """The whole markdown page for labelled runs; ``plots[i]`` are run i's plots,
    ``traces[i]`` the link to its trace file (None: none written)."""
    check_lang(lang)
    if not runs:
        raise ValueError("a report needs at least one results object")
    plot_lists = list(plots) if plots is not None else [[] for _ in runs]
    links = list(traces) if traces is not None else [None] * len(runs)
    parts = ["# " + text("page.title", lang, labels=", ".join(label for label, _ in runs))]
    parts.append(f"## {text('prov.title', lang)}")
    # Each run's command is in its own "Reproduce" section below.
    parts += provenance_section(runs, lang, commands=False)
    if len(runs) == 1:
        label, results = runs[0]
        parts += _run_sections(results, plot_lists[0], findings(results, lang), lang, "##",
                               links[0])
    else:
        parts.append(f"## {text('page.combined', lang)}")
        parts.append(tables.format_combined_table(runs, lang, "github"))
        parts.append(text("page.speed_legend", lang))
        parts += _marks_lines([r for _, r in runs], lang)
        for i, ((label, results), run_plots, link) in enumerate(
                zip(runs, plot_lists, links, strict=True), 1):
            parts.append(f"## {text('page.run', lang, index=i, label=label)}")
            parts += _run_sections(results, run_plots, findings(results, lang), lang, "###", link)
    return "\n\n".join(parts).rstrip() + "\n"


def write_report(
    results_list: Sequence[Results],
    out_path: str | Path,
    lang: str = "en",
    *,
    labels: Sequence[str] | None = None,
    traces: Sequence[str | os.PathLike[str] | None] | None = None,
) -> Path:
    """Write the markdown page and its PNG plots (``<stem>-<plot>.png``) beside it; return its
    path. ``traces[i]``: run i's trace file, linked from the page (relative to it)."""
    check_lang(lang)
    out = Path(out_path)
    if not results_list:
        raise ValueError("a report needs at least one results object")
    names = list(labels) if labels is not None else [default_label(r) for r in results_list]
    if len(names) != len(results_list):
        raise ValueError("one label per results object")
    single = len(results_list) == 1
    plot_lists = [
        write_plots(r, out.parent, out.stem if single else f"{out.stem}-{i}", lang)
        for i, r in enumerate(results_list, 1)
    ]
    links = [None if t is None else Path(os.path.relpath(t, out.parent)).as_posix()
             for t in (traces or [None] * len(results_list))]
    page = format_report(list(zip(names, results_list, strict=True)), lang=lang, plots=plot_lists,
                         traces=links)
    return write_atomic(out, page)
