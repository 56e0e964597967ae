"""The FAQ's plots: each belief's interval against its limit, batch size against speed and
accuracy, one process's memory split, and the comparison's round-by-round utilisation.

Labels are in the page's language when a CJK font is found (``gpubench[zh]``), else English
(the :class:`~gpubench.report.plots.Plot` says which). A plot that cannot be drawn gives a
reason, never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import matplotlib
from matplotlib.figure import Figure

from gpubench.faq import memory
from gpubench.faq.inputs import FaqInputs
from gpubench.faq.verdicts import DOES_NOT_HOLD, HOLDS, LEVEL, MIN_SEEDS, Answer
from gpubench.report import plots as base
from gpubench.report.faq_text import faq_text as t
from gpubench.report.i18n import mode_label
from gpubench.report.plots import WIDTH_IN, Plot, plot_language

# Which plots each answer shows (the verdicts and utilisation plots head the page).
PLOTS_OF: dict[str, tuple[str, ...]] = {"batch": ("batch",), "memory": ("memory",)}
_NO_DATA = "no-data"
_VERDICT_COLOUR = {HOLDS: "tab:green", DOES_NOT_HOLD: "tab:red"}
# What the notes expected, per ratio (the user's own numbers).
_EXPECTED = {"threaded-vs-serial": 0.4, "multiprocess-vs-serial": 1.0,
             "multi-gpu-vs-serial": 2.0, "batch": 2.5, "process-memory": 1.0}


def _rc(family: str | None) -> dict[str, Any]:
    rc: dict[str, Any] = {"figure.dpi": base.DPI, "savefig.dpi": base.DPI}
    if family is not None:
        rc.update({"font.family": [family, "DejaVu Sans"],
                   "font.sans-serif": [family, "DejaVu Sans"],
                   "axes.unicode_minus": False})
    return rc


def draw_verdicts(answers: Sequence[Answer], path: Path, lang: str) -> Path | str:
    rows = [(a, p) for a in answers for p in a.parts if p.interval is not None]
    if not rows:
        return _NO_DATA
    fig = Figure(figsize=(WIDTH_IN, 1.6 + 0.55 * len(rows)))
    ax = fig.add_subplot()
    for y, (_, part) in enumerate(rows):
        i = part.interval
        assert i is not None
        colour = _VERDICT_COLOUR.get(part.verdict, "tab:gray")
        ax.errorbar([i.estimate], [y], xerr=[[i.estimate - i.low], [i.high - i.estimate]],
                    fmt="o", color=colour, capsize=5, markersize=7)
        ax.annotate(f"{i.estimate:.2f}", (i.estimate, y), textcoords="offset points",
                    xytext=(0, 8), ha="center", fontsize=8, zorder=5,
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none"})
        for limit in (part.claim.low, part.claim.high):
            if limit is not None:
                ax.vlines(limit, y - 0.35, y + 0.35, colors="black", linewidth=1.6,
                          label=t("plot.verdicts.limit", lang) if y == 0 else "_nolegend_")
        expected = _EXPECTED.get(part.key)
        if expected is not None:
            ax.plot([expected], [y], marker="D", markerfacecolor="none", color="tab:blue",
                    linestyle="none",
                    label=t("plot.verdicts.notes", lang) if y == 0 else "_nolegend_")
    ax.set_yticks(range(len(rows)), [
        f"{t(f'short.{p.key}', lang)} · {t(f'verdict.{p.verdict}', lang)}"
        for _, p in rows], fontsize=9)
    ax.set_ylim(len(rows) - 0.5, -0.7)
    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    ticks = [v for v in (0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 4, 6, 8, 12, 16) if lo <= v <= hi]
    ax.set_xticks(ticks, [f"{v:g}x" for v in ticks])
    ax.minorticks_off()
    ax.set_xlabel(t("plot.verdicts.x", lang))
    ax.set_title(t("plot.verdicts", lang, level=f"{LEVEL * 100:.0f}"))
    ax.grid(axis="x", alpha=0.3, which="both")
    handles = ax.get_legend_handles_labels()[0] + _verdict_handles([p for _, p in rows], lang)
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.3 / fig.get_figheight() * math.ceil(len(handles) / 3),
                           1, 1))
    return base.write_figure(fig, path)


def _verdict_handles(parts: Sequence[Any], lang: str) -> list[Any]:
    """What each point's colour means: one entry per verdict the plot shows."""
    from matplotlib.lines import Line2D

    by_colour: dict[str, list[str]] = {}
    for p in parts:
        names = by_colour.setdefault(_VERDICT_COLOUR.get(p.verdict, "tab:gray"), [])
        if t(f"verdict.{p.verdict}", lang) not in names:
            names.append(t(f"verdict.{p.verdict}", lang))
    return [Line2D([], [], linestyle="none", marker="o", markersize=7, color=colour,
                   label=" / ".join(names)) for colour, names in by_colour.items()]


def _seed_curves(inputs: FaqInputs) -> dict[int, list[list[float]]]:
    """Batch -> each seed's accuracy curve, for batches measured with enough seeds."""
    out: dict[int, list[list[float]]] = {}
    for batch, runs in sorted(inputs.accuracy.items()):
        curves = []
        for acc in runs:
            curve = [acc.get("initial_accuracy"), *(acc.get("accuracy") or ())]
            if not acc.get("error") and None not in curve:
                curves.append([float(v) for v in curve])
        if len(curves) >= MIN_SEEDS:
            out[batch] = curves
    return out


def draw_batch(inputs: FaqInputs, path: Path, lang: str) -> Path | str:
    """Time per sample per batch size (median, whole range of the rounds); beside it the
    held-out accuracy per round (mean and range over seeds) only where at least
    ``MIN_SEEDS`` seeds were measured: one seed's curve is not shown as a finding."""
    points = inputs.batch_points
    if len(points) < 2:
        return _NO_DATA
    curves = _seed_curves(inputs)
    fig = Figure(figsize=(WIDTH_IN if curves else WIDTH_IN * 0.6, 4.2))
    if curves:
        left, right = fig.subplots(1, 2)
    else:
        left, right = fig.add_subplot(), None
    labels, medians, lows, highs = [], [], [], []
    for r in points:
        serial = r.mode("serial")
        samples = r.config.samples or [1]
        n = sum(samples) * int(r.config.local_epochs or 1)
        per = sorted(x / n * 1e6 for x in (serial.round_times_s if serial else ()))
        if not per:
            continue
        labels.append(str(r.config.batch_size))
        mid = per[len(per) // 2]
        medians.append(mid)
        lows.append(mid - per[0])
        highs.append(per[-1] - mid)
    xs = range(len(labels))
    left.bar(xs, medians, yerr=[lows, highs], capsize=6, color="tab:blue", alpha=0.8)
    for x, m, h in zip(xs, medians, highs, strict=True):
        left.annotate(f"{m:.3g}", (x, m + h), textcoords="offset points", xytext=(0, 5),
                      ha="center", va="bottom", fontsize=8)
    left.set_xticks(list(xs), labels)
    left.set_xlabel("batch size")
    left.set_ylim(0, max(m + h for m, h in zip(medians, highs, strict=True)) * 1.2)
    left.set_title(t("plot.batch.time", lang), fontsize=10)
    left.grid(axis="y", alpha=0.3)
    if right is not None:
        for batch, runs in curves.items():
            length = min(len(c) for c in runs)
            mean = [sum(c[i] for c in runs) / len(runs) for i in range(length)]
            line = right.plot(range(length), mean, marker="o",
                              label=f"batch {batch} ({len(runs)} seeds)")[0]
            right.fill_between(range(length), [min(c[i] for c in runs) for i in range(length)],
                               [max(c[i] for c in runs) for i in range(length)],
                               color=line.get_color(), alpha=0.2)
        right.set_ylim(0, 1.05)
        right.set_xlabel(t("plot.batch.round", lang))
        right.legend(loc="lower right", fontsize="small")
        right.grid(alpha=0.3)
        right.set_title(t("plot.batch.acc", lang), fontsize=10)
    fig.suptitle(t("plot.batch", lang) if curves else t("plot.batch.speed_only", lang))
    fig.tight_layout()
    return base.write_figure(fig, path)


def draw_memory(inputs: FaqInputs, path: Path, lang: str) -> Path | str:
    """The memory run's processes, each once (the page's table lists the batch points too)."""
    run = inputs.memory
    procs = (memory.processes(run) if run is not None and not run.config.interleave
             else []) or memory.measured_processes(inputs)
    if not procs:
        return _NO_DATA
    fig = Figure(figsize=(WIDTH_IN, 4.6))
    ax = fig.add_subplot()
    colours = {"tensors": "tab:blue", "cache": "tab:orange", "context": "tab:gray",
               "total": "tab:purple"}
    seen: set[str] = set()
    for x, p in enumerate(procs):
        if p.context_bytes is not None and p.allocated_bytes is not None:
            parts = [("tensors", p.allocated_bytes), ("cache", p.cache_bytes or 0),
                     ("context", p.context_bytes)]
        else:
            parts = [("total", p.total_bytes)]
        bottom = 0.0
        for key, size in parts:
            name = t(f"mem.col.{key}", lang)
            ax.bar(x, size / 2**30, 0.6, bottom=bottom, color=colours[key],
                   label=name if key not in seen else "_nolegend_", edgecolor="white")
            seen.add(key)
            bottom += size / 2**30
    ax.axhline(2e9 / 2**30, color="tab:red", linestyle="dashed", label=t("plot.memory.notes", lang))
    cpu = inputs.cpu_slots
    labels = [f"{mode_label(p.mode, lang, cpu_slots=cpu)}\n{p.device} · batch {p.batch_size}"
              for p in procs]
    crowded = len(procs) > 6
    ax.set_xticks(range(len(procs)), labels, fontsize=7 if crowded else 8,
                  rotation=35 if crowded else 0, ha="right" if crowded else "center")
    ax.set_ylabel(t("plot.memory.y", lang))
    ax.set_title(t("plot.memory", lang))
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(0, max(ax.get_ylim()[1], 2.3))
    fig.legend(loc="lower center", ncol=4, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return base.write_figure(fig, path)


def write_faq_plots(
    inputs: FaqInputs, answers: Sequence[Answer], out_dir: Path, stem: str, lang: str
) -> dict[str, Plot]:
    """``<stem>-<key>.png`` for every plot the inputs allow; a reason for the others."""
    plot_lang, family = plot_language(lang)
    drawers: dict[str, tuple[str, Callable[[Path, str], Path | str]]] = {
        "verdicts": (t("plot.verdicts", lang, level=f"{LEVEL * 100:.0f}"),
                     lambda p, lg: draw_verdicts(answers, p, lg)),
        "batch": (t("plot.batch", lang), lambda p, lg: draw_batch(inputs, p, lg)),
        "memory": (t("plot.memory", lang), lambda p, lg: draw_memory(inputs, p, lg)),
    }
    out: dict[str, Plot] = {}
    for key, (title, draw) in drawers.items():
        path = out_dir / f"{stem}-{key}.png"
        try:
            with matplotlib.rc_context(cast(Any, _rc(family))):
                outcome = draw(path, plot_lang)
        except Exception as exc:  # a plot must never cost the page
            outcome = f"{type(exc).__name__}: {exc}"
        if outcome == _NO_DATA:
            outcome = t("plot.no_data", lang)
        out[key] = (Plot(key, title, path=outcome, lang=plot_lang) if isinstance(outcome, Path)
                    else Plot(key, title, reason=str(outcome)))
    if inputs.comparison is not None:
        (util,) = base.write_plots(inputs.comparison, out_dir, stem, lang, kinds=("utilisation",))
        out["utilisation"] = util
    return out
