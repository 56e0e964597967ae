"""``sweep``: one comparison repeated over the values of one parameter.

Each point is a full :func:`gpubench.run.harness.compare` run written to its own results file;
:func:`summarize` derives, from those results alone, each mode's round time, time per
sample, speedup and device utilisation at every point, and serial's own change between the
smallest and the largest value (the notes' "raise the batch from 32 to 128 for 2-3x").

With ``accuracy_rounds`` R, every point also trains R progressing FedAvg rounds and scores
each aggregate on a held-out set (:mod:`gpubench.run.accuracy`): a faster round is then read next
to the local steps it takes and the accuracy it reaches, and, given a target accuracy, the
time to reach it (rounds needed times the point's measured serial round).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gpubench.config import RunConfig
from gpubench.results import Results, write_results, write_text_atomic

# argparse dest -> flag, for the parameters a sweep may vary.
SWEEPABLE: dict[str, str] = {
    "batch_size": "--batch-size",
    "clients": "--clients",
    "samples_per_client": "--samples-per-client",
    "local_epochs": "--local-epochs",
    "lr": "--lr",
    "workers": "--workers",
    "workers_per_device": "--workers-per-device",
    "case": "--case",
}
SUMMARY_FILE = "summary.json"
PLOT_FILE = "summary.png"

CompareFn = Callable[..., Results]
AccuracyFn = Callable[..., Any]  # (config, rounds, target=...) -> AccuracyRun
Progress = Callable[[str, str, int, int], None]


@dataclass(frozen=True)
class SweepPoint:
    value: Any
    path: Path
    results: Results
    accuracy: dict[str, Any] | None = None  # AccuracyRun.to_dict(), or {"error": reason}


@dataclass(frozen=True)
class Sweep:
    parameter: str  # the argparse dest, e.g. "batch_size"
    points: tuple[SweepPoint, ...]
    out_dir: Path
    command: str = ""
    created_utc: str = ""

    @property
    def interrupted(self) -> bool:
        return any(p.results.interrupted for p in self.points)


def default_out_dir() -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("results") / f"sweep-{stamp}"


def point_filename(parameter: str, value: Any) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(value)).strip("_")[:60] or "value"
    return f"{parameter}-{safe}.json"


def _labelled(progress: Progress, label: str) -> Progress:
    def point_progress(mode: str, phase: str, index: int, total: int, **kw: Any) -> None:
        progress(f"{label} {mode}", phase, index, total, **kw)

    return point_progress


def run_sweep(
    parameter: str,
    points: Sequence[tuple[Any, RunConfig]],
    out_dir: Path,
    *,
    compare_fn: CompareFn | None = None,
    sampler_factory: Any = None,
    progress: Progress | None = None,
    command: str = "",
    prepared: Sequence[Any] | None = None,
    accuracy_rounds: int = 0,
    accuracy_target: float | None = None,
    accuracy_fn: AccuracyFn | None = None,
) -> Sweep:
    """Run ``compare`` at every point, writing each point's results as soon as it ends.

    With ``accuracy_rounds`` > 0, each point then trains that many progressing rounds and
    records the held-out accuracy after each (a failure there is recorded, not raised).
    Stops after a point that was interrupted (Ctrl-C); what was measured is kept.
    """
    if accuracy_rounds < 0:
        raise ValueError(f"accuracy rounds must be >= 0, got {accuracy_rounds}")
    if accuracy_rounds and accuracy_fn is None:
        from gpubench.run.accuracy import run_accuracy

        accuracy_fn = run_accuracy
    if compare_fn is None:
        from gpubench.run.harness import compare

        compare_fn = compare
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    done: list[SweepPoint] = []
    for i, (value, config) in enumerate(points):
        point_progress = _labelled(progress, f"{parameter}={value}") if progress else None
        kwargs: dict[str, Any] = {"progress": point_progress, "sampler_factory": sampler_factory,
                                  "command": command}
        if prepared is not None:
            kwargs["prepared"] = prepared[i]
        results = compare_fn(config, **kwargs)
        path = write_results(results, out_dir / point_filename(parameter, value))
        accuracy = None
        if accuracy_fn is not None and accuracy_rounds and not results.interrupted:
            if progress:
                progress(f"{parameter}={value} accuracy", "round", 1, 1)
            try:
                accuracy = accuracy_fn(config, accuracy_rounds, target=accuracy_target).to_dict()
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # the case's code raised: the timings still stand
                accuracy = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
            if progress:
                progress(f"{parameter}={value} accuracy", "done", 1, 1)
        done.append(SweepPoint(value, path, results, accuracy))
        if results.interrupted:
            break
    return Sweep(parameter, tuple(done), out_dir, command, created)


# --- what the points show -----------------------------------------------------------------------


def _samples_per_round(results: Results) -> int | None:
    samples = results.config.get("samples")
    epochs = results.config.get("local_epochs") or 1
    if not isinstance(samples, (list, tuple)) or not samples:
        return None
    return int(sum(samples)) * int(epochs)


def _utilisation(mode: Any) -> float | None:
    """Mean utilisation over the devices the mode used (the monitor's, when it ran)."""
    values = [s.util_mean_pct for s in mode.device_stats
              if s.device in mode.devices and s.util_mean_pct is not None]
    return sum(values) / len(values) if values else None


def _mode_row(results: Results, mode: Any) -> dict[str, Any]:
    per_round = _samples_per_round(results)
    round_s = mode.median_round_s if mode.ok else None
    return {
        "name": mode.name,
        "status": mode.status,
        "round_s": round_s,
        "samples_per_round": per_round,
        "per_sample_us": round_s / per_round * 1e6 if round_s and per_round else None,
        "speedup_vs_serial": mode.speedup_vs_serial,
        "util_mean_pct": _utilisation(mode),
        "same_result": mode.same_result,
        "error": mode.error,
    }


def _numeric(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def serial_effect(points: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Serial at the smallest and the largest value: how much faster per sample and round."""
    rows = []
    for p in points:
        serial = next((m for m in p["modes"] if m["name"] == "serial"), None)
        if serial and serial["per_sample_us"]:
            rows.append((p["value"], serial))
    if len(rows) < 2:
        return None
    if all(_numeric(v) is not None for v, _ in rows):
        rows.sort(key=lambda r: _numeric(r[0]) or 0.0)
    (lo, a), (hi, b) = rows[0], rows[-1]
    return {
        "from": lo,
        "to": hi,
        "round_s": [a["round_s"], b["round_s"]],
        "per_sample_us": [a["per_sample_us"], b["per_sample_us"]],
        "round_speedup": a["round_s"] / b["round_s"],
        "per_sample_speedup": a["per_sample_us"] / b["per_sample_us"],
    }


def _accuracy_row(point: SweepPoint, modes: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The point's accuracy, with the time to the target from its measured serial round."""
    if point.accuracy is None or point.accuracy.get("error"):
        return point.accuracy
    row = dict(point.accuracy)
    serial = next((m for m in modes if m["name"] == "serial" and m["round_s"]), None)
    needed = row.get("rounds_to_target")
    row["time_to_target_s"] = needed * serial["round_s"] if serial and needed else None
    return row


def summarize(sweep: Sweep) -> dict[str, Any]:
    points = []
    for p in sweep.points:
        modes = [_mode_row(p.results, m) for m in p.results.modes]
        points.append({
            "value": p.value,
            "file": p.path.name,
            "interrupted": p.results.interrupted,
            "modes": modes,
            "accuracy": _accuracy_row(p, modes),
        })
    return {
        "parameter": sweep.parameter,
        "flag": SWEEPABLE.get(sweep.parameter, sweep.parameter),
        "values": [p.value for p in sweep.points],
        "points": points,
        "serial_effect": serial_effect(points),
        "command": sweep.command,
        "created_utc": sweep.created_utc,
        "interrupted": sweep.interrupted,
    }


def write_summary(summary: dict[str, Any], out_dir: Path) -> Path:
    text = json.dumps(summary, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    return write_text_atomic(out_dir / SUMMARY_FILE, text)


# --- rendering ------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def format_effect(summary: dict[str, Any]) -> str:
    effect = summary.get("serial_effect")
    if not effect:
        return "serial's effect: not measured (serial ran at fewer than two points)"
    flag = summary["flag"]
    a, b = effect["round_s"]
    pa, pb = effect["per_sample_us"]
    return (
        f"serial, {flag} {effect['from']} -> {effect['to']}: round {a:.3g} s -> {b:.3g} s "
        f"({effect['round_speedup']:.2f}x), per sample {pa:.3g} us -> {pb:.3g} us "
        f"({effect['per_sample_speedup']:.2f}x faster per sample)"
    )


def format_sweep_table(summary: dict[str, Any]) -> str:
    from tabulate import tabulate

    rows = []
    for p in summary["points"]:
        for m in p["modes"]:
            rows.append([
                p["value"], m["name"], m["status"], _fmt(m["round_s"], ".3g"),
                _fmt(m["per_sample_us"], ".3g"), _fmt(m["speedup_vs_serial"], ".2f", "x"),
                _fmt(m["util_mean_pct"], ".0f", "%"),
            ])
    headers = [summary["flag"].lstrip("-"), "mode", "status", "round (median, s)",
               "per sample (us)", "speedup vs serial", "utilisation"]
    out = tabulate(rows, headers=headers) + "\n\n" + format_effect(summary)
    accuracy = format_accuracy_table(summary)
    return out + "\n\n" + accuracy if accuracy else out


def format_accuracy_table(summary: dict[str, Any]) -> str:
    """Per point: local steps, held-out accuracy after each progressing round, time to target."""
    from tabulate import tabulate

    rows = []
    for p in summary["points"]:
        acc = p.get("accuracy")
        if not acc:
            continue
        if acc.get("error"):
            rows.append([p["value"], "—", f"failed: {acc['error']}", "—", "—"])
            continue
        curve = " → ".join(f"{a:.2f}" for a in [acc["initial_accuracy"], *acc["accuracy"]])
        target = "—"
        if acc.get("target") is not None:
            needed, secs = acc.get("rounds_to_target"), acc.get("time_to_target_s")
            target = (f"{needed} rounds" + (f", {secs:.3g} s" if secs else "")
                      if needed else f"not in {acc['rounds']} rounds")
        rows.append([p["value"], _fmt(acc.get("local_steps"), ".3g"), curve,
                     _fmt(acc.get("final"), ".3f"), target])
    if not rows:
        return ""
    rounds = next(p["accuracy"].get("rounds") for p in summary["points"] if p.get("accuracy"))
    headers = [summary["flag"].lstrip("-"), "local steps per client and round",
               f"held-out accuracy: start → after each of {rounds} progressing rounds",
               "final", "to target"]
    return tabulate(rows, headers=headers, disable_numparse=True)


def write_sweep_plot(summary: dict[str, Any], path: Path) -> Path | None:
    """Round time, speedup and utilisation against the parameter (PNG); None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    values = [str(v) for v in summary["values"]]
    xs = list(range(len(values)))
    names: list[str] = []
    for p in summary["points"]:
        names.extend(m["name"] for m in p["modes"] if m["name"] not in names)
    fig = Figure(figsize=(12, 3.8), dpi=100)
    panels = [("round_s", "round time (median, s)"), ("speedup_vs_serial", "speedup vs serial"),
              ("util_mean_pct", "utilisation (mean %)")]
    for i, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        drawn = False
        for name in names:
            ys = []
            for p in summary["points"]:
                row = next((m for m in p["modes"] if m["name"] == name), None)
                ys.append(row[key] if row and row[key] is not None else float("nan"))
            if any(y == y for y in ys):  # not all NaN
                ax.plot(xs, ys, marker="o", label=name)
                drawn = True
        if drawn:
            ax.set_ylim(bottom=0)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks(xs)
        ax.set_xticklabels(values)
        ax.set_xlabel(summary["flag"])
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if drawn and i == 0:
            ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
