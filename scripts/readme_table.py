"""Rewrite the measured blocks of the README and the docs from committed results files.

    python scripts/readme_table.py            # rewrite every block in place
    python scripts/readme_table.py --check    # exit 1 if a block is not what the files say

A block is ``<!-- measured:NAME -->`` … ``<!-- /measured:NAME -->``
(``gpubench.report.measured_blocks``); this script names each block and the results files it
is written from. Each speed cell is ``gpubench.report.measures.format_speedup`` (the speedup
over serial with its interval, from ``gpubench.stats`` on the rounds, paired where the run was
interleaved) and its verdict word: the figure every table, finding and plot shows; ✗ marks a
mode whose result check failed (its ratio is not a speedup). Each block ends with one verdict
line per results file, which the prose around it may repeat and never contradict
(tests/test_readme.py). Needs no torch. Exit status 2 when a document's markers are broken or
name a block this script does not write.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpubench.faq.inputs import load_inputs  # noqa: E402
from gpubench.output import write_atomic  # noqa: E402
from gpubench.report import measured_blocks as mb  # noqa: E402
from gpubench.report.measures import format_bytes  # noqa: E402
from gpubench.results import Results, read_results  # noqa: E402

# The hand-written documents; the FAQ pages and reports beside them are written by gpubench.
DOCUMENTS = ("README.md", "docs/gating.md", "docs/scaling-out.md", "docs/faq/README.md")

COLUMNS = ("serial", "threaded", "multiprocess", "multi-gpu", "streams", "vectorized")
# (label, results file); a file that is not there is left out.
ROWS = (
    ("2 CPU slots, cnn, 10 clients, batch 128 (FAQ run)", "docs/faq/cpu-slots/results/compare.json"),
    ("2 CPU slots, cnn, 10 clients, batch 128", "reports/cpu-slots/compare.json"),
    ("1 CPU slot (2 cores), mlp, 10 clients, batch 64", "reports/cpu-slots/vectorized-mlp.json"),
    ("1 H200, cnn, 10 clients, batch 128", "reports/gpu-h200/compare-all.json"),
)
START, END = mb.start("modes"), mb.end("modes")


def cell(results: Results, name: str) -> str:
    text = mb.speed_text(results, name)
    mode = results.mode(name)
    if mode is None or not mode.ok or name == "serial":
        return text
    if name == "multi-gpu":
        devices = len(mode.devices)
        text += f" ({devices} {'devices' if devices != 1 else 'device'})"
    if mode.same_result is False:
        text += " ✗"
    return text


def _rows(rows: tuple[tuple[str, str], ...]) -> list[tuple[str, Results]]:
    return [(label, read_results(ROOT / path)) for label, path in rows if (ROOT / path).is_file()]


def _verdicts(runs: list[tuple[str, Results]], columns: tuple[str, ...]) -> str:
    return "\n".join(f"- {mb.verdict_line(label, r, columns)}" for label, r in runs)


def table() -> str:
    runs = _rows(ROWS)
    lines = ["| | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(cell(r, c) for c in COLUMNS) + " |" for label, r in runs]
    return "\n".join(lines) + "\n\n" + _verdicts(runs, COLUMNS[1:])


# The "Threads, processes and a device each" table: (client, device, results file).
OWN_COLUMNS = ("threaded", "multiprocess", "multi-gpu")
OWN_ROWS = (
    ("idealised (data on the device, one model per worker)", "two 1-core slots",
     "reports/cpu-own-client/idealised-cpu2.json"),
    ("`--preset flower-like` (host data, DataLoader with 2 workers, crop-flip, fresh model, "
     "`loss.item()`)", "two 1-core slots", "reports/cpu-own-client/flower-like-cpu2.json"),
    ("the example Flower app (PIL images, `ToTensor`, `Normalize`)", "two 1-core slots",
     "reports/cpu-own-client/example-app-cpu2.json"),
    ("idealised", "one slot of 2 cores", "reports/cpu-own-client/idealised-cpu1.json"),
    ("the example Flower app", "one slot of 2 cores",
     "reports/cpu-own-client/example-app-cpu1.json"),
)
COUNTERFACTUAL = "@torch-threads=1"


def own_cell(results: Results, name: str) -> str:
    text = cell(results, name)
    mode = results.mode(name)
    if mode is not None and not mode.reproducible:
        text += " (not reproducible)"
    other = results.mode(name + COUNTERFACTUAL)
    if other is not None:
        text += f"; {cell(results, other.name)} with `--torch-threads 1`"
        if not other.reproducible:
            text += " (not reproducible)"
    return text


def own_table() -> str:
    lines = ["| client | device | " + " | ".join(OWN_COLUMNS) + " |", "|---" * 5 + "|"]
    runs = []
    for label, device, path in OWN_ROWS:
        file = ROOT / path
        if file.is_file():
            results = read_results(file)
            runs.append((f"{Path(path).stem}", results))
            cells = " | ".join(own_cell(results, c) for c in OWN_COLUMNS)
            lines.append(f"| {label} | {device} | {cells} |")
    columns = tuple(c + s for c in OWN_COLUMNS for s in ("", COUNTERFACTUAL))
    return "\n".join(lines) + "\n\n" + _verdicts(runs, columns)


# Each FAQ set and the files its pages are written from (scripts/make-reports.sh).
FAQ_SETS = (
    ("docs/faq/cpu-slots (two CPU slots)", "docs/faq/cpu-slots/results",
     ("*.json", "sweep/*.json")),
    ("docs/faq/gpu-h200 (one H200)", "reports/gpu-h200", ("compare-all.json", "sweep/*.json")),
)


def beliefs() -> str:
    lines = []
    for label, folder, patterns in FAQ_SETS:
        paths = [p for pattern in patterns for p in sorted((ROOT / folder).glob(pattern))]
        if paths:
            lines.append(f"- {mb.belief_line(label, load_inputs(paths))}")
    return "\n".join(lines)


# Flower as a peer of the pools: scripts/measure_memory.py runs (their PSS in ``extra``), the
# flwr run engine and, measured once with the commit before it, run_simulation.
PEERS = (
    ("flower through `flwr run`; 2 CPU slots, cnn, 10 clients, batch 128",
     "reports/cpu-slots/flower-peer.json"),
    ("flower through `run_simulation` (the engine before, commit c57ae40); the same run",
     "reports/cpu-slots/flower-peer-run_simulation.json"),
)
PEER_MODES = ("serial", "multi-gpu", "ray", "flower")


def _pss(results: Results, name: str) -> str:
    mode = results.mode(name)
    extra = mode.extra if mode is not None else {}
    peak, procs = extra.get("pss_peak_bytes"), extra.get("pss_processes")
    if not isinstance(peak, int):
        return "—"
    if not isinstance(procs, int):
        return format_bytes(peak)
    return f"{format_bytes(peak)} ({procs} process{'' if procs == 1 else 'es'})"


def _peer(label: str, path: str) -> str:
    if not (ROOT / path).is_file():
        return (f"- Verdict, {label}: not measured (`{path}` is not there; "
                "`bash scripts/make-evidence.sh` makes it)")
    results = read_results(ROOT / path)
    lines = ["| mode | speed vs serial | median round | cold start | peak PSS of its processes |",
             "|---|---|---|---|---|"]
    for name in PEER_MODES:
        m = results.mode(name)
        if m is None:
            continue
        round_s = f"{m.median_round_s:.3g} s" if m.median_round_s else "—"
        cold = f"{m.cold_start_s:.3g} s" if m.cold_start_s is not None else "—"
        lines.append(f"| {name} | {cell(results, name)} | {round_s} | {cold} | "
                     f"{_pss(results, name)} |")
    return (f"{label} (`{path}`):\n\n" + "\n".join(lines) + "\n\n"
            + _verdicts([(label, results)], PEER_MODES[1:]))


def peer_table() -> str:
    return "\n\n".join(_peer(label, path) for label, path in PEERS)


RENDERERS: dict[str, Callable[[], str]] = {"modes": table, "own-client": own_table,
                                           "beliefs": beliefs, "peer": peer_table}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    bodies: dict[str, str] = {}
    stale = []
    for name in DOCUMENTS:
        path = ROOT / name
        text = path.read_text(encoding="utf-8")
        try:
            wanted = mb.blocks(text)
            for block in wanted:
                if block in RENDERERS and block not in bodies:
                    bodies[block] = RENDERERS[block]()
            new = mb.replace_blocks(text, bodies)
        except mb.BlockError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        if new != text:
            stale.append(name)
            if not args.check:
                write_atomic(path, new)
    if args.check and stale:
        print("stale: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
