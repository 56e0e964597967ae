"""A figure as a PNG file: drawn on the Agg canvas, written by the one atomic writer; and what
every plot draws alike: a mode's name under its shape, and the marks' legend entries."""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gpubench.output import write_atomic
from gpubench.report import measures
from gpubench.report.i18n import text
from gpubench.report.tables import display_width

DPI = 100
# The shapes of the marks (measures.MARKS) that are hatched: a mode that computed another
# result, one that is not reproducible, a round without a monitor sample.
HATCH = "//"
NOT_REPRODUCIBLE_HATCH = ".."
UNSAMPLED_HATCH = "xx"


def write_figure(fig: Figure, path: Path) -> Path:
    """Render ``fig`` as PNG at :data:`DPI` and write it to ``path`` (see
    :func:`gpubench.output.write_atomic`); returns ``path``."""
    FigureCanvasAgg(fig)
    png = io.BytesIO()
    # No "Software" entry: the same figure gives the same bytes with any matplotlib.
    fig.savefig(png, dpi=DPI, format="png", metadata={"Software": None})
    return write_atomic(path, png.getvalue())


def tick_label(label: str, marks: Sequence[str], lang: str, width: int = 14) -> str:
    """A mode's name under its bar: a setting in brackets on a line of its own, each line
    wrapped at ``width`` cells (a Chinese character counts two), then the mode's marks."""
    for bracket in (" (", "（"):
        label = label.replace(bracket, "\n" + bracket.strip(), 1)
    lines = []
    for part in label.split("\n"):
        lines += _wrap_cells(part, width)
    lines += [text(f"mark.{m}", lang) for m in marks]
    return "\n".join(lines)


def _wrap_cells(line: str, width: int) -> list[str]:
    """``line`` cut at spaces; a word is cut itself only where it is wider than twice
    ``width`` cells (a setting such as ``(torch-threads=1)`` stays whole)."""
    width = max([width, *(display_width(w) for w in line.split(" ") if
                          display_width(w) <= 2 * width)])
    out, current = [], ""
    for word in line.split(" "):
        joined = f"{current} {word}" if current else word
        if display_width(joined) <= width:
            current = joined
            continue
        if current:
            out.append(current)
        current = ""
        for ch in word:
            if display_width(current + ch) > width:
                out.append(current)
                current = ""
            current += ch
    return [*out, current] if current else out


def mark_handles(marks: Collection[str], lang: str) -> list[Any]:
    """Legend entries for ``marks`` (in ``measures.MARKS`` order), each in its own shape."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    shapes: dict[str, Any] = {
        measures.MARK_FAILED: lambda label: Line2D(
            [], [], linestyle="none", marker="o", markersize=9, markerfacecolor="none",
            markeredgecolor="dimgray", label=label),
        measures.MARK_DIFFERS: lambda label: Patch(
            facecolor="whitesmoke", edgecolor="dimgray", hatch=HATCH, label=label),
        measures.MARK_NOT_REPRODUCIBLE: lambda label: Patch(
            facecolor="white", edgecolor="dimgray", hatch=NOT_REPRODUCIBLE_HATCH, label=label),
        measures.MARK_UNSAMPLED: lambda label: Patch(
            facecolor="none", edgecolor="tab:purple", hatch=UNSAMPLED_HATCH, label=label),
    }
    return [shapes[m](text(f"mark.{m}.legend", lang)) for m in measures.MARKS if m in marks]
