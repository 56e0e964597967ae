"""Which results answer which question: the FAQ's inputs, from its own plan or from files.

``gpubench faq --from`` takes results files in any order (and sweep ``summary.json`` files
for accuracy); :func:`gather` decides what each one is for, by content alone:

- the **comparison** (beliefs 1-3, the performance table, the utilisation plot): the run with
  serial and the most of threaded / multiprocess / multi-gpu, preferring multi-gpu on two or
  more devices;
- the **memory run** (belief 5): a run *not* interleaved with serial and multiprocess — in an
  interleaved run every mode's processes are alive at once, so a device's memory is theirs
  together; failing that, the comparison itself;
- the **batch points** (belief 4): serial at two or more batch sizes, otherwise the same round
  (case, clients, samples, devices, command: the points of one sweep); the smallest and the
  largest batch are compared.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpubench.errors import UsageError
from gpubench.results import Results, ResultsFileError, from_dict
from gpubench.sweep_summary import SweepSummary, is_sweep_summary, load_sweep_summary

COMPARED_MODES = ("threaded", "multiprocess", "multi-gpu")


@dataclass(frozen=True)
class FaqInputs:
    comparison: Results | None = None
    memory: Results | None = None
    batch_points: tuple[Results, ...] = ()  # serial at each batch size, smallest first
    # batch -> its accuracy runs, one per sweep summary (a seed each)
    accuracy: Mapping[int, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()  # the files (or plan steps) these came from
    labels: tuple[tuple[str, Results], ...] = ()  # each run with the file it came from
    # Workers-per-device sweeps' summaries (``gpubench faq --clients-sweep``, one per client).
    clients_sweeps: tuple[SweepSummary, ...] = ()

    @property
    def runs(self) -> tuple[Results, ...]:
        seen: list[Results] = []
        for r in (self.comparison, self.memory, *self.batch_points):
            if r is not None and not any(r is s for s in seen):
                seen.append(r)
        return tuple(seen)

    @property
    def labelled_runs(self) -> tuple[tuple[str, Results], ...]:
        """Every run used, with the name of its file (``run N`` where none is known)."""
        out = []
        for i, r in enumerate(self.runs, 1):
            label = next((name for name, s in self.labels if s is r), f"run {i}")
            out.append((label, r))
        return tuple(out)

    @property
    def cpu_slots(self) -> bool:
        """Every device of every run is a CPU slot (then every answer says so)."""
        runs = [r for r in self.runs if r.device_ids]
        return bool(runs) and all(r.on_cpu_slots for r in runs)


def device_ids(results: Results) -> list[str]:
    return list(results.device_ids)


def _ok_modes(results: Results) -> set[str]:
    return {m.name for m in results.modes if m.ok and m.round_times_s}


def _comparison_score(results: Results) -> tuple[int, int]:
    names = _ok_modes(results) | {m.name for m in results.modes}
    if "serial" not in _ok_modes(results):
        return (-1, 0)
    multi = results.mode("multi-gpu")
    spread = 1 if multi is not None and multi.ok and len(multi.devices) >= 2 else 0
    return (sum(n in names for n in COMPARED_MODES), spread)


def _has_memory_modes(results: Results) -> bool:
    return {"serial", "multiprocess"} <= _ok_modes(results)


def _batch_key(results: Results) -> tuple[Any, ...]:
    c = results.config
    return (c.case, c.clients, str(c.samples_per_client),
            c.local_epochs, tuple(device_ids(results)), results.command)


def _batch_points(runs: Sequence[Results]) -> tuple[Results, ...]:
    groups: dict[tuple[Any, ...], dict[int, Results]] = {}
    for r in runs:
        batch = r.config.batch_size
        if "serial" in _ok_modes(r) and isinstance(batch, int):
            groups.setdefault(_batch_key(r), {}).setdefault(batch, r)
    best: dict[int, Results] = {}
    for points in groups.values():
        if len(points) > len(best):
            best = points
    if len(best) < 2:
        return ()
    return tuple(best[b] for b in sorted(best))


def gather(
    runs: Sequence[Results],
    summaries: Sequence[SweepSummary] = (),
    sources: Sequence[str] = (),
    labels: Sequence[str] = (),
) -> FaqInputs:
    """Assign each run to the question it answers (see the module docstring); ``labels``
    names each run's file, in the order of ``runs``."""
    scored = [(r, _comparison_score(r)) for r in runs]
    comparison = None
    candidates = [(r, s) for r, s in scored if s[0] > 0]
    if candidates:
        top = max(s for _, s in candidates)
        comparison = next(r for r, s in candidates if s == top)
    points = _batch_points(runs)
    plain = [r for r in runs if _has_memory_modes(r) and not r.config.interleave]
    own = [r for r in plain if r is not comparison and not any(r is p for p in points)]
    chosen = own or [r for r in plain if r is comparison] or plain
    memory = chosen[0] if chosen else None
    if memory is None and comparison is not None and _has_memory_modes(comparison):
        memory = comparison
    return FaqInputs(
        comparison=comparison,
        memory=memory,
        batch_points=points,
        accuracy=accuracy_by_batch(summaries),
        sources=tuple(sources),
        labels=tuple(zip(labels, runs, strict=False)),
    )


def accuracy_by_batch(
    summaries: Sequence[SweepSummary],
) -> dict[int, tuple[Mapping[str, Any], ...]]:
    """Batch size -> its accuracy runs, from sweep summaries over ``batch_size`` (several
    summaries of the same sweep with other ``--seed`` values give one run per seed)."""
    out: dict[int, list[Mapping[str, Any]]] = {}
    for s in summaries:
        if s.parameter != "batch_size":
            continue
        for p in s.points:
            if p.accuracy is not None and isinstance(p.value, int):
                out.setdefault(p.value, []).append(p.accuracy)
    return {b: tuple(runs) for b, runs in out.items()}


def load_inputs(paths: Sequence[str | Path]) -> FaqInputs:
    """Read results files and sweep summaries; an unusable file is a one-line UsageError."""
    runs: list[Results] = []
    labels: list[str] = []
    summaries: list[SweepSummary] = []
    for path in paths:
        p = Path(path)
        data = read_json(p)
        try:
            if is_sweep_summary(data):
                summaries.append(load_sweep_summary(data))
                continue
            runs.append(from_dict(data))
        except ResultsFileError as exc:
            raise UsageError(f"{p}: {exc}") from None
        labels.append(str(p))
    if not runs:
        raise UsageError("--from needs at least one gpubench results file")
    return gather(runs, summaries, [str(p) for p in paths], labels)


def read_json(p: Path) -> Any:
    """A JSON file's data; an unreadable or non-JSON file is a one-line UsageError."""
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {p}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError(f"{p} is not a JSON file") from None
