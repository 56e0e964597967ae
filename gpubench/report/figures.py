"""A figure as a PNG file: drawn on the Agg canvas, written by the one atomic writer."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gpubench.output import write_atomic

DPI = 100


def write_figure(fig: Figure, path: Path) -> Path:
    """Render ``fig`` as PNG at :data:`DPI` and write it to ``path`` (see
    :func:`gpubench.output.write_atomic`); returns ``path``."""
    FigureCanvasAgg(fig)
    png = io.BytesIO()
    # No "Software" entry: the same figure gives the same bytes with any matplotlib.
    fig.savefig(png, dpi=DPI, format="png", metadata={"Software": None})
    return write_atomic(path, png.getvalue())
