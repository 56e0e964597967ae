"""Rewrite the README's "What it measured" table from committed results files.

    python scripts/readme_table.py            # rewrite README.md in place
    python scripts/readme_table.py --check    # exit 1 if README.md is not what the files say

Each row is one results file (the FAQ's comparison on CPU slots, the vectorized page, the
committed GPU run); each cell the speedup over serial of ``gpubench.report.measures.speed_of`` (``gpubench.stats``
on its rounds, paired where the run was interleaved): the figure every table, finding and plot
shows; ✗ marks a mode whose result check failed (its ratio is not a speedup). Needs no torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpubench.report import measures  # noqa: E402
from gpubench.results import Results, read_results  # noqa: E402

START = "<!-- measured-table:start -->"
END = "<!-- measured-table:end -->"
COLUMNS = ("serial", "threaded", "multiprocess", "multi-gpu", "streams", "vectorized")

# (label, results file); a file that is not there is left out.
ROWS = (
    ("2 CPU slots, cnn, 10 clients, batch 128 (FAQ run)", "docs/faq/cpu-slots/results/compare.json"),
    ("2 CPU slots, cnn, 10 clients, batch 128", "reports/cpu-slots/compare.json"),
    ("1 CPU slot (2 cores), mlp, 10 clients, batch 64", "reports/cpu-slots/vectorized-mlp.json"),
    ("1 H200, cnn, 10 clients, batch 128", "reports/gpu-h200/compare-all.json"),
)


def cell(results: Results, name: str) -> str:
    mode = results.mode(name)
    if mode is None:
        return ""
    if not mode.ok:
        return "n/a" if mode.status == "not_applicable" else "failed"
    if name == "serial":
        return "1.00x"
    speed = measures.speed_of(results, mode)
    if speed.estimate is None:
        return ""
    text = f"{speed.estimate:.2f}x"
    devices = len(mode.devices)
    if name == "multi-gpu":
        text += f" ({devices} {'devices' if devices != 1 else 'device'})"
    if mode.same_result is False:
        text += " ✗"
    return text


def table() -> str:
    lines = ["| | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for label, path in ROWS:
        file = ROOT / path
        if not file.is_file():
            continue
        results = read_results(file)
        lines.append(f"| {label} | " + " | ".join(cell(results, c) for c in COLUMNS) + " |")
    return "\n".join(lines)


# The "When threads lose" table: (client, device, results file).
OWN_START = "<!-- own-client-table:start -->"
OWN_END = "<!-- own-client-table:end -->"
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
    for label, device, path in OWN_ROWS:
        file = ROOT / path
        if file.is_file():
            results = read_results(file)
            cells = " | ".join(own_cell(results, c) for c in OWN_COLUMNS)
            lines.append(f"| {label} | {device} | {cells} |")
    return "\n".join(lines)


def _between(text: str, start: str, end: str, body: str) -> str:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    for start, end in ((START, END), (OWN_START, OWN_END)):
        if start not in text or end not in text:
            print(f"README.md has no {start} ... {end} markers", file=sys.stderr)
            return 2
    new = _between(text, START, END, table())
    new = _between(new, OWN_START, OWN_END, own_table())
    if args.check:
        return 0 if new == text else 1
    readme.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
