"""The phase plot: per mode, a stacked bar of the mean client time by phase.

One bar per mode that ran (counterfactual rows too), the clients of the mode's first device;
each segment a phase (setup, data, copy, compute, write, aggregate). What the ratio of two
modes is made of: a mode whose clients wait for data, or fight for the cores in compute,
shows it here. Drawn on the Agg canvas like every plot of :mod:`gpubench.report.plots`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from gpubench.findings.phases import phase_means
from gpubench.report import measures
from gpubench.report.figures import mark_handles, tick_label, write_figure
from gpubench.report.i18n import has, mode_label, text
from gpubench.results import PHASES, Results

WIDTH_IN = 10.0


def draw_phases(results: Results, path: Path, lang: str) -> Path | str:
    """Stacked bars of mean seconds per client in each phase; the reason key when none."""
    rows = []
    for mode in results.modes:
        means = phase_means(mode) if mode.ok else None
        if means:
            rows.append((mode, means))
    if not rows:
        return "skip.no_phases"
    cpu = results.on_cpu_slots
    names = list(PHASES) + sorted({p for _, m in rows for p in m} - set(PHASES))
    cmap = matplotlib.colormaps["tab10"]
    fig = Figure(figsize=(WIDTH_IN, 5.0))
    ax = fig.add_subplot()
    xs = list(range(len(rows)))
    bottom = [0.0] * len(rows)
    for i, phase in enumerate(names):
        heights = [m.get(phase, 0.0) for _, m in rows]
        label = text(f"phase.{phase}", lang) if has(f"phase.{phase}") else phase
        # A phase no client spent time in is neither drawn nor listed in the legend.
        if not any(h > 0 for h in heights):
            continue
        ax.bar(xs, heights, bottom=bottom, color=cmap(i % 10), label=label, width=0.6)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    for x, total in zip(xs, bottom, strict=True):
        ax.annotate(f"{total:.3g} s", (x, total), textcoords="offset points", xytext=(0, 4),
                    ha="center", fontsize=8)
    labels = [tick_label(mode_label(m.name, lang, cpu_slots=cpu, devices=len(m.devices)),
                         measures.mode_marks(results, m), lang) for m, _ in rows]
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylim(0, max(bottom) * 1.15 or 1.0)
    ax.set_ylabel(text("plot.phases.y", lang))
    ax.set_title(f"{text('plot.phases', lang)} — {measures.case_title(results)}".rstrip(" —"))
    marks = {k for m, _ in rows for k in measures.mode_marks(results, m)}
    ax.legend(handles=ax.get_legend_handles_labels()[0] + mark_handles(marks, lang),
              loc="upper left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return write_figure(fig, path)
