"""Rewrite the README's "What it measured" table from committed results files.

    python scripts/readme_table.py            # rewrite README.md in place
    python scripts/readme_table.py --check    # exit 1 if README.md is not what the files say

Each row is one results file (the FAQ's comparison on CPU slots, the vectorized page, the
committed GPU run); each cell the speedup over serial that ``gpubench.stats`` computes from
its rounds (paired rounds where the run was interleaved), the same figure the reports and
the gate show. Needs no torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpubench import stats  # noqa: E402
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
    rounds = stats.rounds_vs_serial(results, mode)
    if rounds is None:
        return ""
    text = f"{stats.speedup(rounds):.2f}x"
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"README.md has no {START} ... {END} markers", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{table()}\n{END}{tail}"
    if args.check:
        return 0 if new == text else 1
    readme.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
