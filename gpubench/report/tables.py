"""Tables from a :class:`Results`: the terminal summary after a run and the FAQ performance table.

Both render as plain text (``tablefmt="simple"``) or markdown (``"github"``) through tabulate.
Column widths count East Asian wide characters as two cells, the same on every machine.
"""

from __future__ import annotations

import types
import unicodedata
from collections.abc import Callable, Sequence

import tabulate as _tabulate_module

from gpubench.findings.phases import largest_phase
from gpubench.report import measures
from gpubench.report.i18n import check_lang, device_label, has, mode_label, text
from gpubench.results import OTHER_LOAD_LIMIT_PCT, ModeResult, Results

TABLE_FORMATS = ("simple", "github")
_NOTE_WIDTH = 60


def display_width(s: str) -> int:
    """Terminal cells a string takes: wide/fullwidth characters count 2, combining ones 0."""
    width = 0
    for ch in s:
        if unicodedata.combining(ch) or ch in "\u200b\u200d\ufe0e\ufe0f":
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


# tabulate measures wide characters with the optional ``wcwidth`` package when installed; give
# it this stdlib-based measure instead, so tables (and golden files) do not depend on it.
_WIDTH_SHIM = types.SimpleNamespace(wcswidth=display_width)


def render(rows: Sequence[Sequence[str]], headers: Sequence[str], tablefmt: str) -> str:
    if tablefmt not in TABLE_FORMATS:
        raise ValueError(f"tablefmt must be one of {', '.join(TABLE_FORMATS)}, got {tablefmt!r}")
    saved = (getattr(_tabulate_module, "wcwidth", None), _tabulate_module.WIDE_CHARS_MODE)
    setattr(_tabulate_module, "wcwidth", _WIDTH_SHIM)  # noqa: B010 (not a typed attribute)
    _tabulate_module.WIDE_CHARS_MODE = True
    try:
        return _tabulate_module.tabulate(
            [list(r) for r in rows],
            headers=list(headers),
            tablefmt=tablefmt,
            disable_numparse=True,
        )
    finally:
        setattr(_tabulate_module, "wcwidth", saved[0])  # noqa: B010
        _tabulate_module.WIDE_CHARS_MODE = saved[1]


def short_reason(mode: ModeResult) -> str:
    """One line of at most 60 characters: why a mode did not run."""
    lines = (mode.error or "").strip().splitlines()
    reason = lines[0].strip() if lines else ""
    if len(reason) > _NOTE_WIDTH:
        reason = reason[: _NOTE_WIDTH - 1].rstrip() + "…"
    return reason


def status_cell(mode: ModeResult, lang: str) -> str:
    label = text(f"status.{mode.status}", lang)
    reason = short_reason(mode)
    return f"{label}: {reason}" if reason else label


def speed_cell(results: Results, mode: ModeResult) -> str:
    """``1.00x`` for serial, ``1.91x [1.00, 3.35]`` for the others (``measures.speed_of``)."""
    return measures.format_speedup(measures.speed_of(results, mode))


def verdict_cell(results: Results, mode: ModeResult, lang: str) -> str:
    """The speed verdict: faster / slower / no clear difference / not comparable."""
    verdict = measures.speed_of(results, mode).verdict
    return "—" if verdict == measures.NO_VERDICT else text(f"verdict.speed.{verdict}", lang)


def check_cell(results: Results, mode: ModeResult, lang: str) -> str:
    """The result check alone: ✓ same as serial, ✗ differs, ≈ not reproducible, ⊘ the mode
    failed, — not checked."""
    if measures.MARK_FAILED in measures.mode_marks(results, mode):
        return text(f"mark.{measures.MARK_FAILED}", lang)
    if results.mode("serial") is None or not mode.ok:
        return "—"
    return text(f"check.{measures.result_check(results, mode)}", lang)


def cell_marks(cells: Sequence[str], lang: str) -> tuple[str, ...]:
    """The marks (``measures.MARKS``) a table row's cells show, in that order: what a reader
    of the table sees, for comparing with a plot's marks."""
    found = []
    for mark in measures.MARKS:
        symbol = text(f"mark.{mark}", lang).split(" ", 1)[0]
        if any(symbol in cell for cell in cells):
            found.append(mark)
    return tuple(found)


def marks_legend(runs: Sequence[Results], lang: str) -> str | None:
    """``**Marks**: ⊘ failed: …; ∅ no sample: …``, for the marks the runs' modes carry; None
    when no mode carries one."""
    present = {mark for r in runs for m in r.modes for mark in measures.mode_marks(r, m)}
    if not present:
        return None
    entries = [text(f"mark.{m}.legend", lang) for m in measures.MARKS if m in present]
    return text("page.marks_legend", lang, marks=text("page.marks_legend.sep", lang).join(entries))


def same_result_cell(results: Results, mode: ModeResult, lang: str) -> str:
    if results.mode("serial") is None:
        return "—"
    if mode.name == "serial":
        return text("baseline", lang)
    if not mode.reproducible:
        return text("cell.not_reproducible", lang)
    diff = mode.max_abs_diff_vs_serial
    diff_text = f"{diff:.1e}" if diff is not None else ""
    if mode.same_result is None:
        return diff_text or "—"
    mark = "✓" if mode.same_result else "✗"
    return f"{mark} {diff_text}".rstrip()


def _util_kind(device: str) -> str:
    """What a device's utilisation measures: kernel-active time (GPU) or busy cores (CPU slot)."""
    kind = device.split(":", 1)[0]
    return {"cuda": "gpu", "cpu": "cpu"}.get(kind, "other")


def busy_cell(mode: ModeResult, device: str, lang: str, *, monitored: bool) -> str:
    """``busy (97% kernel-active)`` / ``idle (3% of the slot's cores)``; without monitoring,
    whether the mode used the device."""
    if not mode.ok:
        return "—"
    if monitored and device in mode.devices and measures.no_sample(mode, device):
        return text(f"mark.{measures.MARK_UNSAMPLED}", lang)
    cell = _state_cell(mode, device, lang, monitored=monitored)
    other = mode.other_load_pct.get(device)
    if other is not None and other > OTHER_LOAD_LIMIT_PCT:
        cell = text("cell.other", lang, cell=cell, other=other)
    return cell


def _state_cell(mode: ModeResult, device: str, lang: str, *, monitored: bool) -> str:
    stat = measures.device_stat(mode, device)
    if stat is None:
        if not monitored and device in mode.devices:
            return text("used", lang)
        return "—"
    pct = measures.util_pct(mode, device)
    util = text(f"util.{_util_kind(device)}", lang, util=pct) if pct is not None else ""
    if stat.busy is None:
        return util or "—"
    state = text("busy" if stat.busy else "idle", lang)
    return text("cell.state", lang, state=state, util=util) if util else state


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _speedup_cell(results: Results, mode: ModeResult) -> str:
    value = measures.speedup(results, mode) if mode.ok else None
    return "—" if value is None else f"{value:.2f}x"


def _phased(results: Results) -> bool:
    """Whether any client of the run recorded its phases (older results have none)."""
    return any(c.phases for m in results.modes for r in m.rounds for c in r.clients)


def largest_phase_cell(mode: ModeResult, lang: str) -> str:
    """``data 62%``: the phase a client of the mode spends most of its time in."""
    found = largest_phase(mode) if mode.ok else None
    if found is None:
        return "—"
    name, share = found
    label = text(f"phase.{name}", lang) if has(f"phase.{name}") else name
    return f"{label} {share * 100:.0f}%"


def format_summary_table(results: Results, *, tablefmt: str = "simple", lang: str = "en") -> str:
    """The table ``gpubench compare`` prints: one row per mode, device columns when monitored."""
    check_lang(lang)
    monitored = measures.monitored(results)
    devices = measures.device_ids(results) if monitored else []
    cpu = results.on_cpu_slots
    mem_key = "col.mem_of_cpu" if cpu else "col.mem_of"
    with_note = any(not m.ok for m in results.modes)
    phased = _phased(results)
    headers = [text(k, lang) for k in ("col.mode", "col.devices", "col.round", "col.spread")]
    headers += [text(k, lang) for k in ("col.speedup", "col.cold", "col.same")]
    if phased:
        headers.append(text("col.largest_phase", lang))
    headers += [device_label(d, lang) for d in devices]
    headers += [text(mem_key, lang, device=device_label(d, lang)) for d in devices]
    if with_note:
        headers.append(text("col.note", lang))
    rows = []
    for mode in results.modes:
        spread = measures.relative_spread(mode.round_times_s)
        row = [
            mode_label(mode.name, lang, cpu_slots=cpu, devices=len(mode.devices)),
            ",".join(mode.devices) or "—",
            _fmt(mode.median_round_s, ".3f") if mode.ok else text(f"status.{mode.status}", lang),
            "—" if spread is None or not mode.ok else f"{spread * 100:.1f}%",
            _speedup_cell(results, mode),
            _fmt(mode.cold_start_s, ".2f"),
            same_result_cell(results, mode, lang) if mode.ok else check_cell(results, mode, lang),
        ]
        if phased:
            row.append(largest_phase_cell(mode, lang))
        row += [busy_cell(mode, d, lang, monitored=True) for d in devices]
        row += [
            measures.format_bytes(measures.device_memory(mode, d)) if mode.ok else "—"
            for d in devices
        ]
        if with_note:
            row.append(short_reason(mode) if not mode.ok else "")
        rows.append(row)
    return render(rows, headers, tablefmt)


def _memory_header(devices: Sequence[str], lang: str) -> str:
    if measures.cpu_slots_only(devices):
        return text("col.memory_cpu", lang)
    return text("col.memory", lang)


def speed_headers(lang: str) -> list[str]:
    return [text("col.speed", lang), text("col.verdict", lang), text("col.check", lang)]


def _memory_cell(mode: ModeResult) -> str:
    if not mode.ok:
        return "—"
    used = mode.devices or tuple(s.device for s in mode.device_stats)
    values = [measures.device_memory(mode, d) for d in used]
    known = [measures.format_bytes(v) for v in values if v is not None]
    return " / ".join(known) if known else "—"


MemoryCell = Callable[[Results, ModeResult], str]


def device_memory_cell(results: Results, mode: ModeResult) -> str:
    """Each used device's peak while the mode ran (every process on it: the monitor's)."""
    return _memory_cell(mode)


def _performance_rows(results: Results, devices: Sequence[str], lang: str,
                      memory: MemoryCell = device_memory_cell) -> list[list[str]]:
    monitored = measures.monitored(results)
    own = measures.device_ids(results)
    cpu = results.on_cpu_slots
    rows = []
    for mode in results.modes:
        row = [mode_label(mode.name, lang, cpu_slots=cpu, devices=len(mode.devices))]
        row += [busy_cell(mode, d, lang, monitored=monitored) if d in own else "—" for d in devices]
        row.append(speed_cell(results, mode) if mode.ok else status_cell(mode, lang))
        row += [verdict_cell(results, mode, lang), check_cell(results, mode, lang)]
        row.append(memory(results, mode))
        rows.append(row)
    return rows


def format_performance_table(
    results: Results,
    lang: str = "en",
    tablefmt: str = "github",
    *,
    memory: MemoryCell = device_memory_cell,
    memory_header: str | None = None,
) -> str:
    """Configuration | <device>… | Speed | Speed verdict | Result | Memory; the reports and
    the FAQ share it (the FAQ with its own memory column: the mode's processes)."""
    check_lang(lang)
    devices = measures.device_ids(results)
    headers = [text("col.config", lang)] + [device_label(d, lang) for d in devices]
    headers += [*speed_headers(lang), memory_header or _memory_header(devices, lang)]
    return render(_performance_rows(results, devices, lang, memory), headers, tablefmt)


def format_combined_table(
    runs: Sequence[tuple[str, Results]], lang: str = "en", tablefmt: str = "github"
) -> str:
    """Several runs in one performance table: a leading run column, every run's devices."""
    check_lang(lang)
    devices = sorted(
        {d for _, r in runs for d in measures.device_ids(r)}, key=measures.device_sort_key
    )
    headers = [text("col.run", lang), text("col.config", lang)]
    headers += [device_label(d, lang) for d in devices]
    headers += [*speed_headers(lang), _memory_header(devices, lang)]
    rows = []
    for label, results in runs:
        rows += [[label, *row] for row in _performance_rows(results, devices, lang)]
    return render(rows, headers, tablefmt)
