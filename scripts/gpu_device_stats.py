"""Per mode and device of every compare*.json in a folder: kernel-active time, SM activity and
occupancy, and how many samples they come from (for scripts/gpu-check.sh).

    python scripts/gpu_device_stats.py OUTDIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def format_mode(mode: dict) -> list[str]:
    times = sorted(mode.get("round_times_s") or [])
    median = f"{times[len(times) // 2]:.4f} s" if times else "-"
    lines = []
    for s in mode.get("device_stats", []):
        if not s["device"].startswith("cuda"):
            continue
        few = " (few)" if s.get("few_samples") else ""
        lines.append(
            f"  {mode['name']:<24} {s['device']}: kernel-active {s.get('util_mean_pct')}% "
            f"SM active {s.get('sm_active_mean_pct')}% occupancy "
            f"{s.get('sm_occupancy_mean_pct')}% from {s.get('samples')} samples{few}; "
            f"median round {median}")
    return lines


def format_file(path: Path) -> list[str]:
    data = json.loads(path.read_text())
    monitor = data.get("monitor") or {}
    lines = [f"# {path.name}: backend {monitor.get('backend')}, "
             f"fields {sorted(monitor.get('fields') or {})}", f"  note: {monitor.get('note')}"]
    for mode in data.get("modes", []):
        lines += format_mode(mode)
    for span in monitor.get("spans", []):
        if span.get("phase") == "round":
            lines.append(f"  span {span['mode']} round {span['round']} {span['start_s']}-"
                         f"{span['end_s']} s: util {span.get('util_mean_pct')} from "
                         f"{span.get('util_samples')} samples")
    return lines


def main(folder: str) -> int:
    for path in sorted(Path(folder).glob("compare*.json")):
        print("\n".join(format_file(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
