"""The history plot: speedup per commit for each mode, one panel per testbed and work.

Each point is a run's speedup with its interval as a whisker; a run that is no evidence
(beside other programs' load, a result that differs) is drawn hollow. The level of each
segment between change points is a step line, and each change point a dashed vertical line
labelled with the commit where the new level starts. :func:`history_panels` returns what is
drawn, so tests read the same data the figure shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from gpubench.history.check import Series
from gpubench.report.figures import write_figure

WIDTH_IN = 10.0
PANEL_HEIGHT_IN = 4.0


@dataclass(frozen=True)
class Point:
    x: int
    speedup: float
    low: float
    high: float
    usable: bool


@dataclass(frozen=True)
class Line:
    """One mode of a panel: its points, its segment levels (x from, x to, level), its
    change points (x, commit, after / before)."""

    mode: str
    points: tuple[Point, ...]
    steps: tuple[tuple[int, int, float], ...]
    changes: tuple[tuple[int, str, float], ...]


@dataclass(frozen=True)
class Panel:
    title: str
    commits: tuple[str, ...]  # the x axis: one label per run, in time order
    lines: tuple[Line, ...]


def _line(series: Series, x_of: dict[str, int]) -> Line:
    points = tuple(
        Point(x_of[e.run], e.speedup, e.low or e.speedup, e.high or e.speedup, e.usable)
        for e in series.entries if e.speedup is not None
    )
    steps = tuple((x_of[s.entries[0].run], x_of[s.entries[-1].run], s.level)
                  for s in series.segments)  # fmt: skip
    usable = series.usable
    changes = tuple((x_of[usable[c.index].run], c.commit or "?", c.ratio)
                    for c in series.changes)  # fmt: skip
    return Line(series.mode, points, steps, changes)


def history_panels(series: Sequence[Series]) -> list[Panel]:
    """The panels of the plot, one per testbed and work, in the order they first appear."""
    groups: dict[tuple[object, object], list[Series]] = {}
    for s in series:
        groups.setdefault((s.testbed, s.work), []).append(s)
    panels = []
    for members in groups.values():
        first: dict[str, tuple[str, int, str]] = {}
        for s in members:
            for order, e in enumerate(s.entries):
                first.setdefault(e.run, (e.time, order, e.commit or "?"))
        runs = sorted(first, key=lambda r: first[r][:2])
        x_of = {run: i for i, run in enumerate(runs)}
        head = members[0]
        title = f"{head.work.describe()} — {head.testbed.describe()}"
        panels.append(Panel(title, tuple(first[r][2][:8] for r in runs),
                            tuple(_line(s, x_of) for s in members)))
    return panels


def _draw_panel(ax: object, panel: Panel) -> None:
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
    cmap = matplotlib.colormaps["tab10"]
    for i, line in enumerate(panel.lines):
        colour = cmap(i % 10)
        for p in line.points:
            ax.errorbar([p.x], [p.speedup], yerr=[[p.speedup - p.low], [p.high - p.speedup]],
                        fmt="o", color=colour, mfc=colour if p.usable else "white",
                        capsize=3, markersize=5, linewidth=1)
        for n, (x0, x1, level) in enumerate(line.steps):
            ax.hlines(level, x0 - 0.4, x1 + 0.4, colors=[colour], linewidth=2,
                      label=line.mode if n == 0 else "_nolegend_")
        for x, commit, ratio in line.changes:
            ax.axvline(x - 0.5, color=colour, linestyle="--", linewidth=1)
            ax.annotate(f"{commit[:8]} ({ratio - 1:+.0%})", (x - 0.5, 1), xycoords=(
                "data", "axes fraction"), xytext=(3, -12), textcoords="offset points",
                fontsize=8, color=colour, rotation=90, va="top")
    ax.set_xticks(range(len(panel.commits)), panel.commits, rotation=60, fontsize=7)
    ax.set_ylabel("speedup vs serial (x)")
    ax.set_title(panel.title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")


def draw_history(series: Sequence[Series], path: str | Path) -> list[Panel]:
    """Write the plot of ``series`` as a PNG to ``path``; the panels it drew."""
    panels = history_panels(series)
    fig = Figure(figsize=(WIDTH_IN, PANEL_HEIGHT_IN * max(len(panels), 1)))
    for i, panel in enumerate(panels, 1):
        _draw_panel(fig.add_subplot(len(panels), 1, i), panel)
    fig.tight_layout()
    write_figure(fig, Path(path))
    return panels
