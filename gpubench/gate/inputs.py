"""Reading what the gate compares: results files, pytest-benchmark files, TOML expectations.

Every reader refuses unusable input with one line (``UsageError`` or ``ResultsFileError``,
the CLI's exit 2): unreadable or corrupt files, unknown keys, and results that hold nothing
measured (no modes, or a mode recorded as ok without a measured round).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpubench.errors import UsageError
from gpubench.gate.checks import Expectation
from gpubench.results import (
    STATUS_OK,
    STATUSES,
    ModeResult,
    Results,
    ResultsFileError,
    RunRecord,
    read_results,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEVICE_KINDS = ("cpu", "cuda")


def require_measured(results: Results, source: str) -> Results:
    """``results`` if it holds something measured; else a one-line ``ResultsFileError``."""
    if not results.modes:
        raise ResultsFileError(f"{source}: holds no modes: nothing was measured")
    for mode in results.modes:
        if mode.status == STATUS_OK and not mode.round_times_s:
            raise ResultsFileError(f"{source}: mode {mode.name!r} is ok but has no measured rounds")
    return results


def read_measured_results(path: str | os.PathLike[str]) -> Results:
    """A gpubench results file that holds measured rounds (``report``, ``predict``, ``gate``)."""
    return require_measured(read_results(path), str(path))


# --- expectations -------------------------------------------------------------------------

_EXPECT_KEYS = {
    "mode": str,
    "case": str,
    "devices": int,
    "device_kind": str,
    "clients": int,
    "min_speedup": float,
    "max_speedup": float,
    "why": str,
}


def _expect_value(where: str, key: str, value: Any) -> Any:
    want = _EXPECT_KEYS[key]
    if isinstance(value, bool):
        raise UsageError(f"{where}: {key} must be a {want.__name__}, got {value!r}")
    if want is float and isinstance(value, int):
        value = float(value)
    if (
        key == "mode"
        and isinstance(value, list)
        and value
        and all(isinstance(v, str) for v in value)
    ):
        return value
    if not isinstance(value, want):
        raise UsageError(f"{where}: {key} must be a {want.__name__}, got {value!r}")
    if isinstance(value, (int, float)) and value <= 0:
        raise UsageError(f"{where}: {key} must be > 0, got {value!r}")
    if key == "device_kind" and value not in DEVICE_KINDS:
        raise UsageError(f"{where}: device_kind must be one of {', '.join(DEVICE_KINDS)}")
    return value


def load_expectations(path: str | os.PathLike[str]) -> tuple[Expectation, ...]:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {p}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p} is not valid TOML: {exc}") from None
    unknown = set(data) - {"expect", "description"}
    if unknown:
        raise UsageError(f"{p}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    entries = data.get("expect")
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{p}: no [[expect]] entries")
    out: list[Expectation] = []
    for i, entry in enumerate(entries, 1):
        where = f"{p}: [[expect]] #{i}"
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: not a table")
        bad = set(entry) - set(_EXPECT_KEYS)
        if bad:
            known = ", ".join(_EXPECT_KEYS)
            raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(bad))} (known: {known})")
        values = {k: _expect_value(where, k, v) for k, v in entry.items()}
        if "mode" not in values:
            raise UsageError(f"{where}: needs a mode")
        lo, hi = values.get("min_speedup"), values.get("max_speedup")
        if lo is None and hi is None:
            raise UsageError(f"{where}: needs min_speedup and/or max_speedup")
        if lo is not None and hi is not None and lo > hi:
            raise UsageError(f"{where}: min_speedup {lo} is above max_speedup {hi}")
        modes = values.pop("mode")
        for mode in [modes] if isinstance(modes, str) else modes:
            out.append(Expectation(mode=mode, **values))
    return tuple(out)


# --- pytest-benchmark ---------------------------------------------------------------------


def _benchmark_mode(bench: Mapping[str, Any], source: str, name: str) -> ModeResult:
    extra = bench.get("extra_info") or {}
    status = str(extra.get("gpubench_status") or STATUS_OK)
    rounds = (bench.get("stats") or {}).get("data")
    if status not in STATUSES:
        raise UsageError(f"{source}: benchmark {name} has unknown status {status!r}")
    if status == STATUS_OK and not rounds:
        raise UsageError(
            f"{source}: benchmark {name} has no raw round times (stats.data); "
            "write the file with --benchmark-json, or save with --benchmark-save-data"
        )
    speedup = extra.get("speedup_vs_serial")
    return ModeResult(
        name=str(extra["gpubench_mode"]),
        status=status,
        error=extra.get("error"),
        devices=tuple(str(d) for d in extra.get("device_ids") or ()),
        round_times_s=tuple(float(t) for t in rounds or ()),
        speedup_vs_serial=float(speedup) if speedup else None,
    )


def benchmark_runs(data: Mapping[str, Any], source: str) -> tuple[Results, ...]:
    """Runs from a pytest-benchmark JSON file written by the ``bench_cases`` suite."""
    groups: dict[tuple[str, int, int], list[ModeResult]] = {}
    info: dict[tuple[str, int, int], dict[str, Any]] = {}
    for bench in data.get("benchmarks") or ():
        extra = bench.get("extra_info") or {}
        mode = extra.get("gpubench_mode")
        if not mode:
            continue
        name = bench.get("fullname") or bench.get("name") or mode
        try:
            key = (str(extra["gpubench_case"]), int(extra["clients"]), int(extra["devices"]))
        except (KeyError, TypeError, ValueError):
            raise UsageError(
                f"{source}: benchmark {name} lacks gpubench_case/clients/devices in extra_info"
            ) from None
        if any(m.name == mode for m in groups.get(key, ())):
            raise UsageError(f"{source}: two benchmarks for mode {mode!r} of case {key[0]!r}")
        groups.setdefault(key, []).append(_benchmark_mode(bench, source, str(name)))
        info.setdefault(key, {})
        for setting in ("batch_size", "samples_per_client", "local_epochs"):
            if extra.get(setting) is not None:
                info[key].setdefault(setting, extra[setting])
    if not groups:
        raise UsageError(
            f"{source}: a pytest-benchmark file without gpubench benchmarks "
            "(no extra_info.gpubench_mode); write it with `pytest bench_cases --benchmark-json`"
        )
    environment = {
        "source": "pytest-benchmark",
        "machine_info": data.get("machine_info") or {},
        "commit_info": data.get("commit_info") or {},
    }
    return tuple(
        Results(
            environment=environment,
            config=RunRecord.of({
                "case": case,
                "clients": clients,
                "devices": str(devices),
                "device_count": devices,
                **info[(case, clients, devices)],
            }),
            modes=tuple(modes),
            created_utc=str(data.get("datetime") or ""),
        )
        for (case, clients, devices), modes in groups.items()
    )


def load_runs(path: str | os.PathLike[str]) -> tuple[tuple[Results, ...], str]:
    """Runs in a gpubench results file or a pytest-benchmark JSON file, and which it was."""
    try:
        return (read_measured_results(path),), "results"
    except ResultsFileError as first:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise first from None
        if isinstance(data, dict) and "benchmarks" in data and "schema_version" not in data:
            return benchmark_runs(data, str(path)), "pytest-benchmark"
        raise
