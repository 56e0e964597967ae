"""PNG plots of a :class:`Results`: speedup, utilisation over time, peak memory, client Gantt.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot, no global
backend switch, no display needed), at a fixed dpi and a size that depends only on the data's
shape. Every plot is optional: missing or malformed data gives a :class:`Plot` with the reason
it was skipped, never an exception, so a report is always written. A drawer returns the path it
wrote, or the i18n key of the reason it drew nothing.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import matplotlib
from matplotlib.figure import Figure

from gpubench.monitor_record import Span
from gpubench.report import measures
from gpubench.report.figures import (
    DPI,
    HATCH,
    NOT_REPRODUCIBLE_HATCH,
    mark_handles,
    tick_label,
    write_figure,
)
from gpubench.report.figures import UNSAMPLED_HATCH as UNSAMPLED_HATCH
from gpubench.report.fonts import find_cjk_font
from gpubench.report.i18n import check_lang, device_label, mode_label, text
from gpubench.report.phase_plots import draw_phases
from gpubench.results import ModeResult, Results
from gpubench.sweep_summary import SweepSummary

WIDTH_IN = 10.0
PLOT_KINDS = ("speedup", "utilisation", "memory", "gantt", "phases")

def _text(key: str, lang: str, **values: object) -> str:
    """The utilisation plot's own phrases are ``plot.util.*`` in the catalogue."""
    if key.startswith("util."):
        key = f"plot.{key}"
    return text(key, lang, **values)


@dataclass(frozen=True)
class Plot:
    """One plot of a report: written to ``path`` (labelled in ``lang``), or skipped for ``reason``."""

    kind: str
    title: str
    path: Path | None = None
    reason: str | None = None
    lang: str = "en"


def plot_language(lang: str) -> tuple[str, str | None]:
    """The language plots can be labelled in here, and the font family to use for it."""
    if check_lang(lang) == "zh":
        family = find_cjk_font()
        if family is None:
            return "en", None
        return "zh", family
    return "en", None


def plot_rc(lang: str) -> dict[str, Any]:
    """matplotlib settings for plots labelled in ``lang`` (a CJK font for zh, when found)."""
    _, family = plot_language(lang)
    rc: dict[str, Any] = {"figure.dpi": DPI, "savefig.dpi": DPI}
    if family is not None:
        # Both fonts by name: glyphs the CJK font lacks (the marks' ✗) come from DejaVu Sans.
        rc["font.family"] = [family, "DejaVu Sans"]
        rc["font.sans-serif"] = [family, "DejaVu Sans"]
        rc["axes.unicode_minus"] = False
    return rc


def _colours(names: list[str]) -> dict[str, Any]:
    cmap = matplotlib.colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def _cpu(results: Results) -> bool:
    return results.on_cpu_slots


# --- speedup ------------------------------------------------------------------------------


# Bar colours by speed verdict (measures.speed_of); the marks (measures.MARKS) have shapes of
# their own: a failed mode is an empty circle at the baseline, one that computed another result
# a hatched square there (neither has a value to draw), a not reproducible one a dotted bar,
# and an unsampled one its symbol under its name.
_VERDICT_COLOURS = {
    measures.FASTER: "tab:green",
    measures.NO_DIFFERENCE: "tab:blue",
    measures.SLOWER_V: "tab:orange",
    measures.BASELINE: "tab:gray",
    measures.BUSY: "lightgray",  # beside other programs' load: no evidence either way
}
# The speedup axis ends at this multiple of the largest drawn value (or of the ideal): a
# whisker that reaches past it is cut there and marked with an arrow and its end.
AXIS_CAP = 2.0
# Whiskers are cut this far below the axis' top, leaving room for the value above them.
LABEL_ROOM = 1.15


@dataclass(frozen=True)
class SpeedBar:
    """One mode of the speedup plot: what it shows, so tests and pages read the same data.

    ``value`` is None where no speedup may be shown (the mode failed, or computed another
    result); ``marks`` are the mode's ``measures.mode_marks``.
    """

    mode: str
    label: str
    value: float | None
    low: float | None
    high: float | None
    verdict: str
    marks: tuple[str, ...]
    ideal: int

    @property
    def hatched(self) -> bool:
        """Drawn as the hatched "other result" square: the result check failed."""
        return measures.MARK_DIFFERS in self.marks


def speedup_bars(results: Results, lang: str = "en") -> list[SpeedBar]:
    """The speedup plot's data, from :func:`gpubench.report.measures.speed_of`: every mode
    that ran or failed (a mode not applicable here is left out)."""
    cpu = _cpu(results)
    bars = []
    for mode in results.modes:
        speed = measures.speed_of(results, mode)
        marks = measures.mode_marks(results, mode)
        if speed.estimate is None and not marks:
            continue
        label = mode_label(mode.name, lang, cpu_slots=cpu, devices=len(mode.devices))
        ideal = max(len(mode.devices), 1)
        if not speed.drawable:
            bars.append(SpeedBar(mode.name, label, None, None, None, speed.verdict, marks, ideal))
            continue
        i = speed.interval
        low, high = (i.low, i.high) if i is not None else (speed.estimate, speed.estimate)
        bars.append(SpeedBar(mode.name, label, speed.estimate, low, high, speed.verdict,
                             marks, ideal))
    return bars


def _axis_top(bars: Sequence[SpeedBar]) -> tuple[float, float]:
    """The axis' top, and the level above which a whisker is cut (room for its label)."""
    drawn = [b for b in bars if b.value is not None]
    ideal = max(b.ideal for b in bars)
    natural = max(max(b.high or 0.0 for b in drawn), ideal, 1.0) * 1.22
    top = min(natural, max(max(b.value or 0.0 for b in drawn), ideal, 1.0) * AXIS_CAP)
    return top, top / LABEL_ROOM


def speedup_figure(results: Results, lang: str) -> tuple[Figure, list[SpeedBar]] | str:
    """The speedup figure and the bars it draws; the i18n key of the reason when none."""
    bars = speedup_bars(results, lang)
    if not any(b.value is not None for b in bars):
        return "skip.no_speedup"
    fig = Figure(figsize=(WIDTH_IN, 5.6))
    ax = fig.add_subplot()
    xs = list(range(len(bars)))
    top, clip = _axis_top(bars)
    for x, bar in zip(xs, bars, strict=True):
        if bar.value is None:
            _draw_no_value(ax, x, bar, top, lang)
            continue
        assert bar.low is not None and bar.high is not None
        colour = _VERDICT_COLOURS.get(bar.verdict, "tab:gray")
        unchecked = measures.MARK_NOT_REPRODUCIBLE in bar.marks
        ax.bar(x, bar.value, 0.8, color=colour, alpha=0.85, gid=f"speedup:{bar.mode}",
               hatch=NOT_REPRODUCIBLE_HATCH if unchecked else None,
               edgecolor="dimgray" if unchecked else None)
        high = min(bar.high, clip)
        if bar.high > bar.low:
            ax.errorbar([x], [bar.value], yerr=[[bar.value - bar.low], [high - bar.value]],
                        fmt="none", ecolor="black", capsize=6, linewidth=1.2)
        if bar.high > clip:
            ax.plot([x], [clip], marker="^", color="black", markersize=8,
                    gid=f"speedup:{bar.mode}:clipped")
            ax.annotate(f"↑ {bar.high:.2f}", (x, clip), textcoords="offset points",
                        xytext=(9, -4), ha="left", va="top", fontsize=8)
        # The value sits above the interval's cap (or the cut), never on it.
        ax.annotate(f"{bar.value:.2f}x", (x, high), textcoords="offset points",
                    xytext=(0, 6), ha="center", va="bottom", fontsize=9)
    for x, bar in zip(xs, bars, strict=True):
        if bar.ideal > 1:
            ax.hlines(bar.ideal, x - 0.4, x + 0.4, colors="tab:red", linestyles="dashed",
                      label=text("plot.ideal", lang) if not ax.get_legend_handles_labels()[1]
                      else "_nolegend_")
    ax.axhline(1.0, color="black", linewidth=0.8, label=text("plot.serial_line", lang))
    crowded = len(bars) > 5
    ax.set_xticks(xs, [tick_label(b.label, b.marks, lang, 11 if crowded else 14)
                       for b in bars], fontsize=8 if crowded else 9)
    ax.set_xlim(-0.6, len(bars) - 0.4)
    ax.set_ylim(0, top)
    ax.set_ylabel(text("plot.speedup.y", lang))
    ax.set_title(f"{text('plot.speedup', lang)} — {measures.case_title(results)}".rstrip(" —"))
    ax.grid(axis="y", alpha=0.3)
    handles = _verdict_handles(bars, lang) + ax.get_legend_handles_labels()[0]
    handles += mark_handles({m for b in bars for m in b.marks}, lang)
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize="small", frameon=False)
    rows = math.ceil(len(handles) / 2)
    fig.tight_layout(rect=(0, min(0.03 + 0.042 * rows, 0.4), 1, 1))
    return fig, bars


def _draw_no_value(ax: Any, x: int, bar: SpeedBar, top: float, lang: str) -> None:
    """A mode with no speedup to show: an empty shape at the baseline, labelled, never a bar."""
    failed = measures.MARK_FAILED in bar.marks
    mark = measures.MARK_FAILED if failed else measures.MARK_DIFFERS
    ax.scatter([x], [0], marker="o" if failed else "s", s=160, facecolor="none" if failed
               else "whitesmoke", hatch=None if failed else HATCH, edgecolor="dimgray",
               linewidth=1.5, zorder=3, clip_on=False, gid=f"speedup:{bar.mode}:{mark}")
    ax.text(x, top * 0.04, text(f"mark.{mark}", lang), ha="center", va="bottom", fontsize=9,
            color="dimgray", gid=f"speedup:{bar.mode}:{mark}:label")


def _verdict_handles(bars: Sequence[SpeedBar], lang: str) -> list[Any]:
    from matplotlib.patches import Patch

    handles = []
    for verdict, colour in _VERDICT_COLOURS.items():
        if verdict != measures.BASELINE and any(b.verdict == verdict and b.value is not None
                                                for b in bars):
            handles.append(Patch(color=colour, alpha=0.85,
                                 label=text(f"verdict.speed.{verdict}", lang)))
    return handles


def draw_speedup(results: Results, path: Path, lang: str) -> Path | str:
    """Bars of speedup vs serial with their 99% intervals; the ideal is the devices used."""
    made = speedup_figure(results, lang)
    if isinstance(made, str):
        return made
    return write_figure(made[0], path)


def draw_sweep_speedup(ax: Any, summary: SweepSummary, lang: str = "en") -> None:
    """The sweep summary's speedup panel: one line per mode over the parameter's values; a
    point whose result check failed (``same_result`` false) is a hatched grey square on the
    x axis with no value, and the line is broken there. For ``gpubench.run.sweep``."""
    values = [str(v) for v in summary.values]
    flagged = False
    for name in summary.mode_names:
        ys: list[float] = []
        bad: list[int] = []
        for x, p in enumerate(summary.points):
            row = p.mode(name)
            value = row.speedup_vs_serial if row else None
            if row is not None and row.same_result is False:
                bad.append(x)
                value = None
            ys.append(float("nan") if value is None else float(value))
        line = ax.plot(range(len(ys)), ys, marker="o", label=name)[0]
        for x in bad:
            ax.scatter([x], [0], marker="s", s=90, facecolor="whitesmoke", hatch=HATCH,
                       edgecolor=line.get_color(), zorder=3, clip_on=False,
                       gid=f"sweep:{name}:{values[x]}:hatched")
            flagged = True
    if flagged:
        handles, _ = ax.get_legend_handles_labels()
        handles += mark_handles({measures.MARK_DIFFERS}, lang)
        ax.legend(handles=handles, fontsize="small", loc="best")
    ax.set_xticks(range(len(values)), values)
    ax.set_ylim(bottom=0)


# --- utilisation over time -------------------------------------------------------------------


def _round_blocks(results: Results) -> list[tuple[ModeResult, tuple[Span, ...]]]:
    """Each mode that has measured rounds in the monitor's spans, in the run's mode order."""
    monitor = results.monitor_record
    return [(mode, own) for mode in results.modes if (own := monitor.rounds(mode.name))]


def _step(left: float, width: float, window: Span, samples: list[tuple[float, float]]
          ) -> tuple[list[float], list[float]]:
    """A round's samples as a step over its slot: a value holds back to the previous sample
    (both NVML and the host backend average over the time before the sample)."""
    scale = width / window.length_s if window.length_s > 0 else 0.0
    xs = [left + scale * (t - window.start_s) for t, _ in samples]
    values = [v for _, v in samples]
    return [left, *xs, left + width], [values[0], *values, values[-1]]


def _draw_mode_util(ax: Any, results: Results, mode: ModeResult, device: str,
                    windows: Sequence[Span], x0: float, colour: Any) -> int:
    """One mode's rounds on one device's panel, from ``x0``, one unit a round; its mean (the
    tables' figure) dashed and labelled. Returns how many of its rounds have no sample."""
    slot, empty = 1.0, 0
    values: list[float] = []
    monitor = results.monitor_record
    for i, w in enumerate(windows):
        samples = monitor.timed_values(
            "util", device, monitor.sample_indices(span=w.index, column="util"))
        if not samples:
            # A round with no sample is shown as such (its own mark), not as 0%.
            empty += 1
            ax.bar(x0 + i * slot + slot / 2, 100, slot - 0.12, color="none",
                   edgecolor="tab:purple", hatch=UNSAMPLED_HATCH, linewidth=0,
                   alpha=0.6, gid=f"util:{mode.name}:{device}:{i}:unsampled")
            continue
        xs, ys = _step(x0 + i * slot + 0.06, slot - 0.12, w, samples)
        ax.fill_between(xs, ys, step="pre", color=colour, alpha=0.45, linewidth=0)
        ax.step(xs, ys, where="pre", color=colour, linewidth=1.0)
        values += [v for _, v in samples]
    # The tables' figure for this mode and device (the monitor's mean over its rounds).
    mean = measures.util_pct(mode, device)
    if values and mean is not None:
        end = x0 + len(windows) * slot
        ax.hlines(mean, x0, end, colors="black", linestyles="dashed", linewidth=1.0)
        ax.annotate(f"{mean:.0f}%", (end, min(mean, 100)), ha="right", va="bottom",
                    textcoords="offset points", xytext=(-2, 2), fontsize=8,
                    gid=f"util:{mode.name}:{device}:mean",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                          "alpha": 0.85})
    return empty


def draw_utilisation(results: Results, path: Path, lang: str) -> Path | str:
    """Per device, utilisation during the measured rounds only: one slot per round, grouped
    by mode (an interleaved run's rounds are gathered under their mode), start-up, warm-up and
    the gaps between rounds left out; each mode's mean over its rounds is marked."""
    if results.monitor is None:
        return "skip.no_monitor"
    monitor = results.monitor_record
    series = monitor.timeline.columns.get("util")
    if not series or not monitor.timeline.t:
        return "skip.bad_timeline"
    blocks = _round_blocks(results)
    if not blocks:
        return "skip.no_rounds"
    devices = sorted(series, key=measures.device_sort_key)
    cpu = _cpu(results)
    colours = _colours([m.name for m in results.modes])
    fig = Figure(figsize=(WIDTH_IN, 2.0 + 1.7 * len(devices)))
    axes = fig.subplots(len(devices), 1, sharex=True, squeeze=False)[:, 0]
    slot, gap = 1.0, 0.8
    starts, x = [], 0.0
    for _, windows in blocks:
        starts.append(x)
        x += len(windows) * slot + gap
    empty = 0
    for ax, device in zip(axes, devices, strict=True):
        for (mode, windows), x0 in zip(blocks, starts, strict=True):
            missed = _draw_mode_util(ax, results, mode, device, windows, x0,
                                     colours.get(mode.name, "tab:gray"))
            empty += missed if ax is axes[0] else 0
        ax.set_ylim(0, 112)
        ax.set_yticks([0, 25, 50, 75, 100])
        ax.set_ylabel(f"{device_label(device, lang)}\n{text('plot.util.y', lang)}")
        ax.grid(axis="y", alpha=0.3)
    centres = [x0 + len(w) * slot / 2 for (_, w), x0 in zip(blocks, starts, strict=True)]
    labels = [
        f"{mode_label(m.name, lang, cpu_slots=cpu, devices=len(m.devices))}\n"
        + _text("util.block", lang, n=len(w), s=sorted(x.length_s for x in w)[len(w) // 2])
        + "".join(f"\n{text(f'mark.{k}', lang)}" for k in measures.mode_marks(results, m))
        for m, w in blocks
    ]
    axes[-1].set_xticks(centres, labels, fontsize=8)
    axes[-1].set_xlim(-gap / 2, x - gap / 2)
    axes[-1].tick_params(axis="x", length=0)
    axes[0].set_title(_text("util.title", lang))
    note = _text("util.left_out", lang, s=monitor.outside_rounds_s() or 0.0)
    if empty:
        note += " " + _text("util.no_sample", lang, n=empty, total=sum(len(w) for _, w in blocks))
    note = textwrap.fill(note, width=70 if lang == "zh" else 140)
    fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=8, color="dimgray")
    marks = {k for m, _ in blocks for k in measures.mode_marks(results, m)}
    if empty:
        marks.add(measures.MARK_UNSAMPLED)
    if marks:
        axes[0].legend(handles=mark_handles(marks, lang), loc="upper right", fontsize=7)
    fig.tight_layout(rect=(0, 0.03 + 0.22 / fig.get_figheight() * note.count("\n"), 1, 1))
    return write_figure(fig, path)


# --- peak memory ---------------------------------------------------------------------------


def draw_memory(results: Results, path: Path, lang: str) -> Path | str:
    """Grouped bars: for each mode, each device's peak; stacked by kind where known."""
    modes = [m for m in results.modes if m.ok]
    devices = measures.device_ids(results)
    values = {(m.name, d): measures.device_memory(m, d) for m in modes for d in devices}
    if not any(v for v in values.values()):
        return "skip.no_memory"
    cpu = _cpu(results)
    fig = Figure(figsize=(WIDTH_IN, 5.0))
    ax = fig.add_subplot()
    width = 0.8 / max(len(devices), 1)
    parts = ("tensors", "cache", "context")
    part_colours = {"tensors": "tab:blue", "cache": "tab:orange", "context": "tab:gray"}
    labelled: set[str] = set()
    for i, mode in enumerate(modes):
        for j, device in enumerate(devices):
            x = i - 0.4 + width * (j + 0.5)
            split = measures.memory_split(mode, device)
            total = values[(mode.name, device)]
            if not total:  # unknown, or nothing on an idle device
                continue
            segments = [(p, split[p]) for p in parts] if split else [("peak", total)]
            bottom = 0.0
            for part, size in segments:
                gib = size / 2**30
                label = text(f"plot.mem.{part}", lang) if part not in labelled else None
                labelled.add(part)
                ax.bar(
                    x,
                    gib,
                    width * 0.9,
                    bottom=bottom,
                    label=label,
                    color=part_colours.get(part, "tab:purple"),
                    edgecolor="white",
                )
                bottom += gib
            if len(devices) > 1:
                ax.annotate(
                    device_label(device, lang),
                    (x, bottom),
                    textcoords="offset points",
                    xytext=(0, 3),
                    ha="center",
                    fontsize=7,
                    rotation=90,
                )
    labels = [tick_label(mode_label(m.name, lang, cpu_slots=cpu, devices=len(m.devices)),
                         measures.mode_marks(results, m), lang) for m in modes]
    ax.set_xticks(range(len(modes)), labels, fontsize=8 if len(modes) > 5 else 9)
    ax.set_ylabel(text("plot.memory.y", lang))
    ax.set_title(text("plot.memory", lang))
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
    marks = {k for m in modes for k in measures.mode_marks(results, m)}
    handles = ax.get_legend_handles_labels()[0] + mark_handles(marks, lang)
    # The marks' explanations are long: one a line.
    ncol = 1 if marks else 3
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize="small", frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout(rect=(0, min(0.03 + 0.042 * math.ceil(len(handles) / ncol), 0.4), 1, 1))
    return write_figure(fig, path)


# --- Gantt of client training ----------------------------------------------------------------


def draw_gantt(results: Results, path: Path, lang: str) -> Path | str:
    """For each mode, one measured round: each client's training as a bar on its lane.

    Every panel has the same time axis (0 to the slowest round), so that a bar's length means
    the same time in every mode; each title gives its round's time and the mode's marks.
    Client numbers are written on bars wide enough for them at the axis' scale."""
    picked: list[tuple[ModeResult, Any]] = []
    for mode in results.modes:
        record = measures.representative_round(mode) if mode.ok else None
        if record is not None:
            picked.append((mode, record))
    if not picked:
        return "skip.no_clients"
    cpu = _cpu(results)
    devices = measures.device_ids(results)
    colours = _colours(devices)
    lanes_of = [
        sorted(
            {(c.device, c.worker) for c in r.clients},
            key=lambda lane: (measures.device_sort_key(lane[0]), lane[1]),
        )
        for _, r in picked
    ]
    heights = [0.9 + 0.35 * len(lanes) for lanes in lanes_of]
    fig = Figure(figsize=(WIDTH_IN, 1.0 + sum(heights)))
    axes = fig.subplots(
        len(picked), 1, sharex=False, squeeze=False, gridspec_kw={"height_ratios": heights}
    )[:, 0]
    ends = [max(max(c.end_s for c in r.clients), r.time_s, 1e-9) for _, r in picked]
    end = max(ends)
    for ax, (mode, record), lanes in zip(axes, picked, lanes_of, strict=True):
        for row, lane in enumerate(lanes):
            for c in (c for c in record.clients if (c.device, c.worker) == lane):
                ax.broken_barh(
                    [(c.start_s, c.end_s - c.start_s)],
                    (row - 0.4, 0.8),
                    facecolors=colours.get(c.device, "tab:gray"),
                    edgecolor="white",
                )
                if c.end_s - c.start_s > end * 0.02:
                    ax.text(
                        (c.start_s + c.end_s) / 2,
                        row,
                        str(c.client),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white",
                    )
        ax.set_yticks(
            range(len(lanes)),
            [f"{device_label(d, lang)} · {text('plot.worker', lang)} {w}" for d, w in lanes],
            fontsize=8,
        )
        ax.set_ylim(len(lanes) - 0.5, -0.5)
        ax.set_xlim(0, end * 1.02)
        ax.tick_params(axis="x", labelsize=8)
        marks = "".join(f"  {text(f'mark.{k}', lang)}" for k in measures.mode_marks(results, mode))
        ax.set_title(
            f"{mode_label(mode.name, lang, cpu_slots=cpu, devices=len(mode.devices))} — "
            f"{record.time_s:.2f} s{marks}",
            fontsize=9,
            loc="left",
        )
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel(text("plot.gantt.x", lang))
    fig.suptitle(text("plot.gantt", lang))
    fig.tight_layout()
    return write_figure(fig, path)


_DRAWERS: dict[str, tuple[str, Callable[[Results, Path, str], Path | str]]] = {
    "speedup": ("plot.speedup", draw_speedup),
    "utilisation": ("plot.util", draw_utilisation),
    "memory": ("plot.memory", draw_memory),
    "gantt": ("plot.gantt", draw_gantt),
    "phases": ("plot.phases", draw_phases),
}


def write_plots(
    results: Results,
    out_dir: str | Path,
    stem: str,
    lang: str = "en",
    kinds: Sequence[str] = PLOT_KINDS,
) -> list[Plot]:
    """Write ``<stem>-<kind>.png`` for every plot the data allows; say why for the others.

    With ``lang="zh"`` and no font with Chinese glyphs, the plots are labelled in English
    (each :class:`Plot` says which language it is labelled in).
    """
    plot_lang, _ = plot_language(lang)
    rc = plot_rc(lang)
    plots = []
    for kind in kinds:
        title_key, draw = _DRAWERS[kind]
        title = text(title_key, lang)
        path = Path(out_dir) / f"{stem}-{kind}.png"
        try:
            with matplotlib.rc_context(cast(Any, rc)):
                outcome = draw(results, path, plot_lang)
        except Exception as exc:  # a plot must never cost the report
            reason = text("skip.error", lang, error=f"{type(exc).__name__}: {exc}")
            plots.append(Plot(kind, title, reason=reason))
            continue
        if isinstance(outcome, Path):
            plots.append(Plot(kind, title, path=outcome, lang=plot_lang))
        else:
            plots.append(Plot(kind, title, reason=_text(outcome, lang)))
    return plots
