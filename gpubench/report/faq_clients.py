"""The FAQ's "how many clients per device" section, from a workers-per-device sweep.

The sweep (``gpubench sweep --workers-per-device 1,2,4,8``; its ``summary.json``) measured, per
value k and mode, clients per second, each worker's peak memory and whether every value
computed serial's result; its summary names each mode's knee (the smallest k within
``sweep_summary.KNEE_WITHIN`` of the best clients/s over serial's clients/s in the same run)
with the ``client_resources`` that give it, and the modes far below serial: read from the
summary (:func:`gpubench.sweep_summary.load_sweep_summary`), never derived again here, so this
section and the sweep's own page name the same knee. One metric throughout: the table's
"vs 1" is the ratio of its clients/s column, its "÷ serial" column is what ranks the knee and
what the plot draws (serial at 1, one line per mode, MPS dashed, a failed value marked, a
refused one hatched: never drawn as a success; a value that ran the same workers as a smaller
one is shown once). It replaces the memory answer's calculated ``num_gpus`` with the measured
one. Without a sweep it says the advice is calculated, not measured. Words come from the
catalogue (``clients.*``); no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from gpubench.errors import UsageError
from gpubench.faq.inputs import FaqInputs
from gpubench.report import measures, tables
from gpubench.report.i18n import device_label, mode_label, text
from gpubench.report.plots import WIDTH_IN, Plot, plot_language
from gpubench.results import STATUS_FAILED, STATUS_NOT_APPLICABLE, STATUS_OK
from gpubench.sweep_summary import (
    FAR_BELOW,
    PER_DEVICE,
    ClientResources,
    Knee,
    ModeRow,
    SummaryPoint,
    SweepSummary,
    load_sweep_summary,
)

PLOT_KEY = "clients"
# Which mode's knee gives the advice, first found first: Flower and Ray are what set
# client_resources; multi-gpu's knee counts the same processes per device.
ADVICE_ORDER = ("flower", "ray", "multi-gpu")


def load_clients_sweep(path: str | Path) -> SweepSummary:
    """A workers-per-device sweep's summary, from its folder or its ``summary.json``; a
    file that is not one is a one-line error (UsageError, or ResultsFileError when the file
    cannot be read as a sweep summary at all)."""
    summary = load_sweep_summary(path)
    if summary.parameter != PER_DEVICE or summary.per_device is None:
        p = Path(path)
        raise UsageError(f"{p / 'summary.json' if p.is_dir() else p} is not the summary of a "
                         "gpubench sweep --workers-per-device")
    return summary


def sweeps_of(inputs: FaqInputs) -> tuple[SweepSummary, ...]:
    return tuple(s for s in inputs.clients_sweeps if s.per_device is not None)


def plot_key(index: int) -> str:
    return f"{PLOT_KEY}-{index + 1}"


def _gib(n: Any) -> str:
    return "—" if n is None else measures.format_bytes(int(n))


def _num(v: Any, spec: str, suffix: str = "") -> str:
    return "—" if v is None else f"{v:{spec}}{suffix}"


def advice_knee(summary: SweepSummary) -> tuple[str, Knee, ClientResources] | None:
    """The knee that gives the advice and its ``client_resources`` (a mode far below serial
    has no knee; a knee whose resources an older summary did not record gives none)."""
    knees = summary.per_device.knees if summary.per_device is not None else {}
    for name in (*ADVICE_ORDER, *knees):
        k = knees.get(name)
        if k is not None and k.client_resources is not None:
            return name, k, k.client_resources
    return None


# --- the section ----------------------------------------------------------------------------


def _status(m: ModeRow, lang: str) -> str:
    if m.same_workers_as is not None:
        return text("clients.status.same", lang, k=m.same_workers_as)
    if m.status == STATUS_OK and m.same_result is False:
        return text("clients.status.differs", lang)
    if m.status == STATUS_OK:
        return text("clients.status.ok", lang)
    reason = (m.error or "?").splitlines()[0][:80]
    key = "clients.status.na" if m.status == STATUS_NOT_APPLICABLE else "clients.status.failed"
    return text(key, lang, reason=reason)


def _table(summary: SweepSummary, lang: str, cpu: bool) -> str:
    # On CPU slots a worker's memory is its host memory: one column.
    cols = ("k", "mode", "workers", "clients_per_s", "vs_one", "vs_serial",
            "memory_cpu" if cpu else "memory", *(() if cpu else ("host",)), "util", "status")
    headers = [text(f"clients.col.{k}", lang) for k in cols]
    rows = []
    for p, m in summary.table_rows():
        if m is None:
            rows.append([str(p.value), *["—"] * (len(cols) - 2),
                         text("clients.status.refused", lang, reason=p.refused)])
            continue
        label = mode_label(m.name, lang, cpu_slots=cpu)
        if m.same_workers_as is not None:  # the smaller value's setting again: shown there
            rows.append([str(p.value), label, _num(m.workers, "d"), *["—"] * (len(cols) - 4),
                         _status(m, lang)])
            continue
        rows.append([
            str(p.value), label, _num(m.workers, "d"), _num(m.clients_per_s, ".3g"),
            _num(m.speedup_vs_one, ".2f", "x"), _num(m.clients_vs_serial, ".2f", "x"),
            _gib(m.worker_host_bytes if cpu else m.worker_device_bytes),
            *(() if cpu else (_gib(m.worker_host_bytes),)),
            _num(m.util_mean_pct, ".0f", "%"), _status(m, lang),
        ])
    return tables.render(rows, headers, "github")


def _knee_line(name: str, k: Knee, lang: str, cpu: bool) -> str:
    room = k.headroom
    per = k.worker_host_bytes if room.of == "host" else k.worker_device_bytes
    left = (text("clients.headroom.none", lang) if room.bytes is None else
            text(f"clients.headroom.{room.of}", lang, left=_gib(room.bytes),
                 pct=_num(None if room.fraction is None else 100 * room.fraction, ".0f", "%")))
    resources = (text("clients.knee.unrecorded", lang) if k.client_resources is None else
                 f"`{k.client_resources.as_argument()}`")
    return text("clients.knee", lang, mode=mode_label(name, lang, cpu_slots=cpu), k=k.value,
                rate=_num(k.clients_per_s, ".3g"), ratio=_num(k.clients_vs_serial, ".2f", "x"),
                best=k.best_value, of_best=f"{100 * k.of_best:.0f}%", resources=resources,
                per=_gib(per), left=left)


def _far_below_line(name: str, best: float, lang: str, cpu: bool) -> str:
    return text("clients.far_below", lang, mode=mode_label(name, lang, cpu_slots=cpu),
                ratio=f"{best:.2f}x", limit=f"{FAR_BELOW:g}x")


def format_clients_section(inputs: FaqInputs, lang: str,
                           plots: Mapping[str, Plot] | None = None) -> list[str]:
    """The section's markdown blocks (a heading first), one part per sweep."""
    out = [f"## {text('clients.title', lang)}"]
    sweeps = sweeps_of(inputs)
    if not sweeps:
        out.append(text("clients.none", lang))
        return out
    for i, summary in enumerate(sweeps):
        info = summary.per_device
        if len(sweeps) > 1 and info is not None:
            preset = text("clients.preset", lang, preset=info.preset) if info.preset else ""
            client = text("clients.client", lang, case=info.case or "?", preset=preset)
            out.append(f"### {client}")
        out += _sweep_blocks(summary, lang, (plots or {}).get(plot_key(i)))
    if any(s.per_device is not None and s.per_device.cpu_slots for s in sweeps):
        out.append(text("clients.cpu_caveat", lang))
    return out


def _sweep_blocks(summary: SweepSummary, lang: str, plot: Plot | None) -> list[str]:
    out = []
    info = summary.per_device
    cpu = info is not None and info.cpu_slots
    devices = ", ".join(device_label(d, lang) for d in info.devices) if info else ""
    out.append(text("clients.intro", lang, devices=devices or "?",
                    values=", ".join(str(v) for v in summary.values)))
    out.append(_table(summary, lang, cpu))
    knees = info.knees if info is not None else {}
    lines = [f"- {_knee_line(n, k, lang, cpu)}" for n, k in knees.items() if k]
    lines += [f"- {text('clients.knee.none', lang, mode=mode_label(n, lang, cpu_slots=cpu))}"
              for n, k in knees.items() if not k]
    below = info.far_below if info is not None else {}
    lines += [f"- {_far_below_line(n, best, lang, cpu)}" for n, best in below.items()]
    if lines:
        out.append("\n".join(lines))
    if plot is not None:
        out.append(f"![{plot.title}]({plot.path.name})" if plot.path is not None else
                   f"*{text('clients.plot.missing', lang, reason=plot.reason)}*")
    if summary.command:
        out.append(f"```\n{summary.command}\n```")
    return out


def num_gpus_advice(inputs: FaqInputs, lang: str, calculated: Sequence[str]) -> list[str]:
    """The memory answer's ``num_gpus`` lines: the sweep's measured knee instead where one was
    measured, else the calculated lines, said to be calculated."""
    found = next(((s, f) for s in sweeps_of(inputs) if (f := advice_knee(s))), None)
    if found is None:
        return [*calculated, text("clients.calculated", lang), ""]
    summary, (name, k, resources) = found
    cpu = summary.per_device is not None and summary.per_device.cpu_slots
    return [text("clients.measured", lang, mode=mode_label(name, lang, cpu_slots=cpu),
                 k=k.value, resources=resources.as_argument()), ""]


# --- the plot -------------------------------------------------------------------------------


def _rate_vs_serial(p: SummaryPoint, m: ModeRow) -> float | None:
    """Where a row's marker sits on the serial-relative axis: the summary's ratio, or (for a
    row that computed something else, which has none) its clients/s over serial's there."""
    if m.clients_vs_serial is not None:
        return m.clients_vs_serial
    serial = p.mode("serial")
    if serial is None or not serial.clients_per_s or not m.clients_per_s:
        return None
    return m.clients_per_s / serial.clients_per_s


def draw_clients(summary: SweepSummary, path: Path, lang: str) -> Path:  # noqa: C901, PLR0912, PLR0915 - two panels of one figure, drawn in turn
    """Clients per second over serial's in the same run against workers per device (left; the
    knee's ranking, serial a line at 1) and each worker's peak memory (right): one line per
    mode, "+mps" dashed; a failed value an x on the axis, a value that computed something else
    a hollow red x, a refused value a hatched band; a value that ran the same workers as a
    smaller one is not drawn again. Each mode's knee is a star of its colour, set apart
    sideways so that knees at the same value stay visible."""
    import matplotlib
    from matplotlib.figure import Figure

    from gpubench.report.figures import write_figure

    values = list(summary.values)
    xs = list(range(len(values)))
    cpu = summary.per_device is not None and summary.per_device.cpu_slots
    knees = summary.per_device.knees if summary.per_device is not None else {}
    fig = Figure(figsize=(WIDTH_IN, 3.8))
    rate_ax, mem_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    cmap = matplotlib.colormaps["tab10"]
    # Serial is the reference of every ratio: the line at 1, not a line of its own.
    rate_ax.axhline(1.0, color="0.35", linestyle=":", linewidth=1.5,
                    label=text("clients.plot.serial", lang))
    names = [n for n in summary.mode_names if n != "serial"]
    failed_label, wrong_label = text("clients.plot.failed", lang), text("clients.plot.differs", lang)
    shown: set[str] = set()

    def once(label: str) -> str:
        if label in shown:
            return "_nolegend_"
        shown.add(label)
        return label

    starred = [n for n in names if knees.get(n) is not None]
    bases = list(dict.fromkeys(n.removesuffix("+mps") for n in names))
    for name in names:
        colour = cmap(bases.index(name.removesuffix("+mps")) % 10)  # a twin shares its colour
        style = "--" if name.endswith("+mps") else "-"
        drawn: list[tuple[int, float, float]] = []  # x, ratio, memory (GiB or nan)
        for x, p in zip(xs, summary.points, strict=False):
            m = p.mode(name)
            if m is None or m.same_workers_as is not None:
                continue
            ratio = _rate_vs_serial(p, m)
            if m.status == STATUS_FAILED:
                rate_ax.plot([x], [0], marker="x", color="tab:red", markersize=9, clip_on=False,
                             linestyle="none", label=once(failed_label))
            elif m.status == STATUS_OK and m.same_result is False and ratio:
                rate_ax.plot([x], [ratio], marker="x", color="tab:red", markersize=11,
                             markerfacecolor="none", linestyle="none", label=once(wrong_label))
            elif m.status == STATUS_OK and m.clients_vs_serial:
                mem = m.worker_host_bytes if cpu else m.worker_device_bytes
                drawn.append((x, m.clients_vs_serial, mem / 2**30 if mem else math.nan))
        if not drawn:
            continue
        label = mode_label(name, lang, cpu_slots=cpu)
        dx, ratios, mems = zip(*drawn, strict=True)
        rate_ax.plot(dx, ratios, marker="o", linestyle=style, color=colour, label=label)
        mem_ax.plot(dx, mems, marker="o", linestyle=style, color=colour, label=label)
        k = knees.get(name)
        if k is not None and k.value in values:
            x = values.index(k.value)
            y = dict(zip(dx, ratios, strict=True)).get(x)
            shift = 0.09 * (starred.index(name) - (len(starred) - 1) / 2)
            if y is not None:
                rate_ax.plot([x + shift], [y], marker="*", markersize=16, color=colour,
                             markeredgecolor="black", markeredgewidth=0.6, linestyle="none",
                             zorder=5, label=once(text("clients.plot.knee", lang)))
    for x, p in zip(xs, summary.points, strict=False):
        if p.refused:
            for ax in (rate_ax, mem_ax):
                ax.axvspan(x - 0.4, x + 0.4, facecolor="none", edgecolor="tab:red", hatch="//",
                           linewidth=0, label=once(text("clients.plot.refused", lang))
                           if ax is rate_ax else "_nolegend_")
    for ax, title, ylabel in (
        (rate_ax, text("clients.plot.rate", lang), text("clients.plot.rate.y", lang)),
        (mem_ax, text("clients.plot.memory", lang),
         text("clients.plot.memory.y_cpu" if cpu else "clients.plot.memory.y", lang)),
    ):
        ax.set_xticks(xs)
        ax.set_xticklabels([str(v) for v in values])
        ax.set_xlim(-0.5, len(xs) - 0.5)
        ax.set_xlabel(text("clients.plot.x", lang))
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    rate_ax.legend(fontsize="small")
    fig.tight_layout()
    return write_figure(fig, path)


def write_clients_plots(inputs: FaqInputs, out_dir: Path, stem: str, lang: str) -> dict[str, Plot]:
    """``<stem>-clients-<n>.png`` for each sweep given (none without); a reason if one failed."""
    import matplotlib

    plot_lang, family = plot_language(lang)
    title = text("clients.plot.rate", lang)
    rc: dict[str, Any] = {}
    if family is not None:
        rc = {"font.family": "sans-serif", "font.sans-serif": [family, "DejaVu Sans"],
              "axes.unicode_minus": False}
    out: dict[str, Plot] = {}
    for i, summary in enumerate(sweeps_of(inputs)):
        key = plot_key(i)
        try:
            with matplotlib.rc_context(cast(Any, rc)):
                path = draw_clients(summary, out_dir / f"{stem}-{key}.png", plot_lang)
        except Exception as exc:  # a plot must never cost the page
            out[key] = Plot(key, title, reason=f"{type(exc).__name__}: {exc}")
            continue
        out[key] = Plot(key, title, path=path, lang=plot_lang)
    return out
