"""Counterfactual rows: why threads lost, by measuring the suspects within the same run.

When ``threaded`` is slower than serial on a CPU slot of several cores, the settings that
could explain it and that gpubench can vary are tried once more, one at a time, inside the
same ``compare``: torch's intra-op threads per worker (each thread's ops otherwise use every
core of the slot, so ``W`` threads oversubscribe it ``W``-fold) and the loader's worker
processes. Each try runs serial and threaded again with that one setting changed; its rows
are named ``<mode>@<setting>=<value>`` (e.g. ``threaded@torch-threads=1``), their speedups
are against the run's own serial (``Results.speed``, as every other row's), and the threaded row's result is checked against the
serial row measured with it. The findings (``gpubench.findings.phases``) then say which
setting moved the ratio, and by how much.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gpubench.config import RunConfig
from gpubench.results import ModeExtra, ModeResult, Results, RunRecord
from gpubench.run.prepare import Prepared
from gpubench.stats import SLOWER

# setting (PipelineConfig field) -> the flag a row's name shows
FLAGS = {"torch_threads": "torch-threads", "loader_workers": "loader-workers"}

RunCompare = Callable[[RunConfig, Prepared, Callable[[str], str]], Results]


def suspects(results: Results, prepared: Prepared) -> list[tuple[str, int]]:
    """The (setting, value) pairs to try: none unless threaded is slower than serial on a
    CPU slot of several cores: its speedup (``Results.speed``, the figure the findings
    explain) below ``stats.SLOWER``."""
    speed = results.speed("threaded")
    if speed is None or speed.ratio >= SLOWER:
        return []
    device = prepared.devices[0]
    cores = len(device.cores)
    if device.is_cuda or cores < 2:
        return []
    p = prepared.config.train.pipeline
    out = []
    workers = max(prepared.config.workers, 1)
    each = max(1, cores // workers)
    if each != (p.torch_threads or cores):
        out.append(("torch_threads", each))
    if p.loader_workers:
        out.append(("loader_workers", 0))
    return out


def row_name(mode: str, setting: str, value: int) -> str:
    return f"{mode}@{FLAGS[setting]}={value}"


def _renamed(row: ModeResult, setting: str, value: int) -> ModeResult:
    extra = ModeExtra.of({**row.extra.to_dict(), "counterfactual": {
        "mode": row.name, "setting": setting, "value": value,
        "checked_against": row_name("serial", setting, value),
    }})
    return replace(
        row, name=row_name(row.name, setting, value), extra=extra,
        # serial@... is the baseline of its own try, not a result checked against serial
        same_result=None if row.name == "serial" else row.same_result,
    )


def with_counterfactuals(results: Results, prepared: Prepared, run: RunCompare) -> Results:
    """``results`` plus the rows of every suspect tried (none when threads did not lose)."""
    tried = suspects(results, prepared)
    if not tried:
        return results
    rows = list(results.modes)
    records: list[dict[str, Any]] = []
    interrupted = results.interrupted
    config = prepared.config
    for setting, value in tried:
        pipeline = replace(config.train.pipeline, **{setting: value})  # type: ignore[arg-type]
        cf_config = replace(config, modes=("serial", "threaded"), profile_ops=False,
                            train=replace(config.train, pipeline=pipeline))
        cf_prep = replace(prepared, config=cf_config, plan=replace(prepared.plan, config=cf_config))
        def name(mode: str, s: str = setting, v: int = value) -> str:
            return row_name(mode, s, v)

        out = run(cf_config, cf_prep, name)
        rows += [_renamed(m, setting, value) for m in out.modes]
        device = prepared.devices[0]
        was = getattr(config.train.pipeline, setting)
        if setting == "torch_threads" and was is None:
            was = len(device.cores)
        records.append({"setting": setting, "flag": FLAGS[setting], "value": value, "was": was,
                        "device": device.id, "cores": len(device.cores),
                        "modes": [row_name(m.name, setting, value) for m in out.modes]})
        if out.interrupted:
            interrupted = True
            break
    record = RunRecord.of({**results.config.to_dict(), "counterfactuals": records})
    # Every row's saved speedup against the run's own serial, by the one measure.
    return replace(results, modes=tuple(rows), config=record,
                   interrupted=interrupted).with_speedups()
