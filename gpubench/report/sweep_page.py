"""A sweep's summary as text and a plot: tables of the points, the knee of each mode with the
``client_resources`` that give it, serial's effect, and round time / speedup / utilisation
against the swept parameter. Reads the summary alone (:class:`gpubench.sweep_summary.SweepSummary`,
through :func:`gpubench.sweep_summary.load_sweep_summary` when it comes from a file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpubench.report.figures import write_figure
from gpubench.report.plots import draw_sweep_speedup
from gpubench.sweep_summary import FAR_BELOW, SweepSummary


def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def format_effect(summary: SweepSummary) -> str:
    effect = summary.serial_effect
    if not effect:
        return "serial's effect: not measured (serial ran at fewer than two points)"
    a, b = effect.round_s
    pa, pb = effect.per_sample_us
    return (
        f"serial, {summary.flag} {effect.from_value} -> {effect.to_value}: round {a:.3g} s -> "
        f"{b:.3g} s ({effect.round_speedup:.2f}x), per sample {pa:.3g} us -> {pb:.3g} us "
        f"({effect.per_sample_speedup:.2f}x faster per sample)"
    )


def _bytes(n: Any) -> str:
    return "—" if n is None else f"{n / 2**30:.2f} GiB"


def format_refused(summary: SweepSummary) -> str:
    return "\n".join(f"{summary.flag} {value}: refused before it started: {reason}"
                     for value, reason in summary.refused.items())


def format_knees(summary: SweepSummary) -> str:
    """The knee of each mode and the ``client_resources`` that give it, one line each."""
    info = summary.per_device
    if info is None:
        return ""
    lines = []
    for name, best in info.far_below.items():
        lines.append(f"{name}: far below serial: at most {best:.2f}x serial's clients/s at every "
                     f"value (under {FAR_BELOW:g}x); no client_resources recommended from it")
    for name, k in info.knees.items():
        if k is None:
            lines.append(f"knee, {name}: none (no value ran and computed serial's result)")
            continue
        room = k.headroom
        left = "headroom unknown" if room.bytes is None else (
            f"{_bytes(room.bytes)} of {room.of} memory left"
            + (f" ({room.fraction:.0%})" if room.fraction is not None else ""))
        per = _bytes(k.worker_device_bytes if room.of == "device" else k.worker_host_bytes)
        lines.append(
            f"knee, {name}: {k.value} worker(s) per device, {_fmt(k.clients_per_s, '.3g')} "
            f"clients/s, {_fmt(k.clients_vs_serial, '.2f', 'x')} serial's clients/s in the same "
            f"run ({k.of_best:.0%} of the best such ratio, at {k.best_value}); "
            f"{per} per worker, {left}")
        lines.append("  " + ("client_resources: not recorded (an older summary whose knee moved; "
                             "rerun the sweep)" if k.client_resources is None
                             else k.client_resources.as_argument()))
    if info.cpu_slots and lines:
        lines.append("(CPU slots: the clients of a slot share its cores, so this knee is about "
                     "the cores, not a GPU)")
    return "\n".join(lines)


def format_per_device_table(summary: SweepSummary) -> str:
    from tabulate import tabulate

    rows: list[list[Any]] = []
    for p, m in summary.table_rows():
        if m is None:
            rows.append([p.value, "—", "refused", "—", "—", "—", "—", "—", "—", "—", "—"])
            continue
        if m.same_workers_as is not None:  # that setting again: shown once, at the smaller value
            rows.append([p.value, m.name, f"same workers as {m.same_workers_as}",
                         _fmt(m.workers, "d"), *["—"] * 7])
            continue
        status = m.status if m.status == "ok" else f"{m.status}: {m.error or '?'}"
        same = {True: "yes", False: "NO", None: "—"}[m.same_result]
        rows.append([
            p.value, m.name, status[:60], _fmt(m.workers, "d"),
            _fmt(m.round_s, ".3g"), _fmt(m.clients_per_s, ".3g"),
            _fmt(m.speedup_vs_one, ".2f", "x"), _fmt(m.clients_vs_serial, ".2f", "x"),
            _bytes(m.worker_device_bytes) + " / " + _bytes(m.worker_host_bytes),
            _fmt(m.util_mean_pct, ".0f", "%"), same,
        ])
    headers = ["workers per device", "mode", "status", "workers", "round (median, s)",
               "clients/s", "vs 1 per device", "÷ serial's clients/s (same run; ranks the knee)",
               "per worker: device / host",
               "utilisation", "serial's result"]
    out = [tabulate(rows, headers=headers, disable_numparse=True)]
    for part in (format_refused(summary), format_knees(summary)):
        if part:
            out.append(part)
    return "\n\n".join(out)


def format_sweep_table(summary: SweepSummary) -> str:
    from tabulate import tabulate

    if summary.per_device is not None:
        return format_per_device_table(summary)
    rows: list[list[Any]] = []
    for p, m in summary.table_rows():
        if m is None:
            rows.append([p.value, "—", "refused", "—", "—", "—", "—"])
            continue
        rows.append([
            p.value, m.name, m.status, _fmt(m.round_s, ".3g"), _fmt(m.per_sample_us, ".3g"),
            _fmt(m.speedup_vs_serial, ".2f", "x"), _fmt(m.util_mean_pct, ".0f", "%"),
        ])
    headers = [summary.flag.lstrip("-"), "mode", "status", "round (median, s)",
               "per sample (us)", "speedup vs serial", "utilisation"]
    out = tabulate(rows, headers=headers) + "\n\n" + format_effect(summary)
    if summary.refused:
        out += "\n" + format_refused(summary)
    accuracy = format_accuracy_table(summary)
    return out + "\n\n" + accuracy if accuracy else out


def format_accuracy_table(summary: SweepSummary) -> str:
    """Per point: local steps, held-out accuracy after each progressing round, time to target."""
    from tabulate import tabulate

    rows = []
    for p in summary.points:
        acc = p.accuracy
        if not acc:
            continue
        if acc.get("error"):
            rows.append([p.value, "—", f"failed: {acc['error']}", "—", "—"])
            continue
        curve = " → ".join(f"{a:.2f}" for a in [acc["initial_accuracy"], *acc["accuracy"]])
        target = "—"
        if acc.get("target") is not None:
            needed, secs = acc.get("rounds_to_target"), acc.get("time_to_target_s")
            target = (f"{needed} rounds" + (f", {secs:.3g} s" if secs else "")
                      if needed else f"not in {acc['rounds']} rounds")
        rows.append([p.value, _fmt(acc.get("local_steps"), ".3g"), curve,
                     _fmt(acc.get("final"), ".3f"), target])
    if not rows:
        return ""
    rounds = next(p.accuracy.get("rounds") for p in summary.points if p.accuracy)
    headers = [summary.flag.lstrip("-"), "local steps per client and round",
               f"held-out accuracy: start → after each of {rounds} progressing rounds",
               "final", "to target"]
    return tabulate(rows, headers=headers, disable_numparse=True)


def write_sweep_plot(summary: SweepSummary, path: Path) -> Path | None:
    """Round time, speedup and utilisation against the parameter (PNG); None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    values = [str(v) for v in summary.values]
    xs = list(range(len(values)))
    names = summary.mode_names
    fig = Figure(figsize=(12, 3.8), dpi=100)
    panels = [("round_s", "round time (median, s)"), ("speedup_vs_serial", "speedup vs serial"),
              ("util_mean_pct", "utilisation (mean %)")]
    for i, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        if key == "speedup_vs_serial":
            # A point whose result check failed is drawn hatched, without a value.
            draw_sweep_speedup(ax, summary)
            ax.set_xlabel(summary.flag)
            ax.set_title(title)
            ax.grid(True, alpha=0.3)
            continue
        drawn = False
        for name in names:
            ys = []
            for p in summary.points:
                row = p.mode(name)
                y = getattr(row, key) if row is not None else None
                ys.append(float("nan") if y is None else y)
            if any(y == y for y in ys):  # not all NaN
                ax.plot(xs, ys, marker="o", label=name)
                drawn = True
        if drawn:
            ax.set_ylim(bottom=0)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks(xs)
        ax.set_xticklabels(values)
        ax.set_xlabel(summary.flag)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if drawn and i == 0:
            ax.legend(fontsize="small")
    fig.tight_layout()
    return write_figure(fig, path)
