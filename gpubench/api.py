"""gpubench as a library: what the commands do, minus the printing and the exit codes.

:func:`compare` is ``gpubench compare``: prepare (every check that makes bad input exit 2
raises ``ConfigError``/``UsageError`` here), the run with the monitor on, and the
counterfactual rows; :func:`run_failed` is the one definition of a failed run. :func:`gate`,
:func:`report` and :func:`sweep` are the other commands' work. The measuring side (torch, the
modes) is imported inside the functions that measure, so importing this module, and calling
:func:`gate`, :func:`report` or :func:`load_results`, loads no torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpubench.config import RunConfig, SampleSizes
from gpubench.errors import UsageError
from gpubench.gate import DEFAULT_MAX_DROP
from gpubench.output import WriteError, refusal, write_atomic
from gpubench.results import STATUS_FAILED, Results, read_results
from gpubench.run.op_files import keep_op_traces
from gpubench.stats import DEFAULT_LEVEL

if TYPE_CHECKING:
    from gpubench.faq.inputs import FaqInputs
    from gpubench.gate import GateReport
    from gpubench.run.prepare import Prepared
    from gpubench.run.sweep import Sweep

__all__ = ["check_gate", "check_writable", "compare", "counterfactuals", "default_out", "doctor",
           "keep_op_traces", "load_results", "measure_faq", "run_failed", "sweep", "sweep_points", "with_value",
           "write_report", "write_trace"]  # fmt: skip

# progress(mode, phase, index, total, **clients): what gpubench.commands.progress displays
Progress = Callable[..., None]



def run_failed(results: Results) -> bool:
    """The run failed: a mode failed, or computed something other than serial's result.

    ``gpubench compare`` and ``gpubench sweep`` exit 1 then (the results are still written)."""
    return any(m.status == STATUS_FAILED or m.same_result is False for m in results.modes)


def load_results(path: str | os.PathLike[str]) -> Results:
    """A results file written by :meth:`Results.save` or ``gpubench compare`` (any schema
    version gpubench reads); ``ResultsFileError`` names what is wrong with a bad one."""
    return read_results(path)


def doctor() -> dict[str, Any]:
    """``gpubench doctor``'s whole answer: what the machine offers
    (:func:`gpubench.run.doctor.collect_machine`) plus a ``findings`` list (by code)."""
    from gpubench.findings import machine_findings
    from gpubench.run.doctor import collect_machine

    machine = collect_machine()
    machine["findings"] = [f.to_dict() for f in machine_findings(machine)]
    return machine


def measure_faq(plan: Any, case: str, devices: str, out_dir: Path, *,
                progress: Progress | None = None) -> FaqInputs:
    """Measure a FAQ plan (:mod:`gpubench.run.faq_plan`) and assign each run to the question
    it answers (:func:`gpubench.faq.inputs.gather`)."""
    from gpubench.faq.inputs import gather

    measuring_environment()
    from gpubench.run.faq_plan import run_plan

    measured = run_plan(plan, case, devices, out_dir, progress=progress)
    return gather(measured.runs, measured.summaries, measured.files, measured.labels)


def default_out(case: str) -> Path:
    """Where ``gpubench compare`` writes when not told: ``results/<UTC time>-<case>.json``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in case)[:40]
    return Path("results") / f"{stamp}-{safe}.json"


def measuring_environment() -> None:
    """What the command line sets first thing (:func:`gpubench.run.environment.measuring_environment`),
    so that a run from the library measures, and records in ``results.environment``, what the
    same run from the command line does. Every measuring function here sets it first."""
    from gpubench.run.environment import measuring_environment as setup

    setup()


def prepare_checked(config: RunConfig, check_fit: bool = True) -> Prepared:
    """Every check of ``config`` (:func:`gpubench.run.prepare.prepare`: the one place
    that checks), under the environment every run measures in."""
    measuring_environment()
    from gpubench.run.prepare import prepare

    return prepare(config, check_fit)


def counterfactuals(
    results: Results, prepared: Prepared, progress: Progress | None = None, command: str = ""
) -> Results:
    """The run plus its counterfactual rows (:mod:`gpubench.run.explain`), measured the same
    way as the run itself."""
    from gpubench.run.explain import with_counterfactuals
    from gpubench.run.harness import measure

    def rerun(config: RunConfig, prep: Any, rename: Callable[[str], str]) -> Results:
        shown = None
        if progress is not None:
            def shown(mode: str, *a: Any, **k: Any) -> None:
                progress(rename(mode), *a, **k)

        return measure(config, progress=shown, command=command, prepared=prep)

    return with_counterfactuals(results, prepared, rerun)


def compare(
    config: RunConfig,
    *,
    progress: Progress | None = None,
    counterfactual: bool = True,
    command: str = "",
    prepared: Prepared | None = None,
) -> Results:
    """Run every mode of ``config`` on the same federated round and return what was measured.

    What ``gpubench compare`` does, minus the printing: the config and every client's data
    are checked first (``ConfigError``/``UsageError`` for bad input), the devices are sampled
    while the modes run (``config.sample_interval_s``; ``None`` turns the monitor off), and
    when threads lose on a CPU slot of several cores the counterfactual rows are measured too
    (``counterfactual=False`` skips them). A failed mode is recorded, never raised: see
    :func:`run_failed`. Ctrl-C (and SIGTERM under the command line) stops every worker and
    returns what was measured with ``interrupted`` set. ``progress(mode, phase, index,
    total)`` is called as the run goes.
    """
    prep = prepared if prepared is not None else prepare_checked(config)
    from gpubench.run.harness import measure

    results = measure(config, progress=progress, command=command, prepared=prep)
    if counterfactual and not results.interrupted:
        results = counterfactuals(results, prep, progress, command)
    return results


def check_writable(path: str | os.PathLike[str], what: str = "") -> None:
    """``UsageError`` before any work when a file cannot be written at ``path`` (it is a
    device, a FIFO, a socket or a folder, or its folder cannot be made or written); ``what``
    names the option that gave the path."""
    reason = refusal(path)
    if reason is not None:
        raise UsageError(f"cannot write {what + ' ' if what else ''}{path}: {reason}")


def _write_junit(report: GateReport, path: str | os.PathLike[str]) -> Path:
    from gpubench.report.gate_pages import format_junit

    return write_atomic(path, format_junit(report))


def _append_step_summary(report: GateReport, path: str | os.PathLike[str]) -> None:
    """Append (never overwrite: other steps write there too) the markdown summary."""
    from gpubench.report.gate_pages import format_gate_markdown

    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(format_gate_markdown(report))
    except OSError as exc:
        raise UsageError(
            f"cannot append to $GITHUB_STEP_SUMMARY {path}: {exc.strerror or exc}"
        ) from None


def check_gate(
    current: Results | Sequence[Results] | str | os.PathLike[str],
    baseline: str | os.PathLike[str] | None = None,
    *,
    history: str | os.PathLike[str] | None = None,
    max_drop: float = DEFAULT_MAX_DROP,
    inconclusive: str = "pass",
    junit_path: str | os.PathLike[str] | None = None,
    level: float = DEFAULT_LEVEL,
    step_summary: bool = True,
) -> GateReport:
    """Verdicts (PASS / FAIL / INCONCLUSIVE per mode) for ``current`` against ``baseline``
    (an earlier results file, a pytest-benchmark file or a TOML expectations file), or
    against ``history``, a history store: each mode against the current level of its series
    (:mod:`gpubench.history.gate`). Give exactly one of the two.

    ``current`` is a run, several runs, or the path of a results or pytest-benchmark file.
    Writes JUnit XML to ``junit_path`` when given, and appends the markdown summary to
    ``$GITHUB_STEP_SUMMARY`` when that is set and ``step_summary`` is true. The report's
    ``exit_code`` is what ``gpubench gate`` exits with. ``inconclusive``: what an
    INCONCLUSIVE verdict counts as, ``"pass"`` (the default) or ``"fail"``.
    """
    from gpubench.gate import evaluate_gate, load_runs

    if inconclusive not in ("pass", "fail"):
        raise UsageError(f"inconclusive must be pass or fail, got {inconclusive!r}")
    if junit_path is not None:
        check_writable(junit_path)
    strict = inconclusive == "fail"
    if (baseline is None) == (history is None):
        raise UsageError("gate against a baseline or a history store (one of the two)")
    if isinstance(current, (str, os.PathLike)):
        current, _ = load_runs(current)
    if history is not None:
        report = _gate_history(current, history, max_drop, inconclusive, level)
    else:
        assert baseline is not None
        report = evaluate_gate(current, baseline, max_drop=max_drop, strict=strict, level=level)
    if junit_path is not None:
        _write_junit(report, junit_path)
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary and summary_path:
        _append_step_summary(report, summary_path)
    return report


def _gate_history(
    current: Results | Sequence[Results],
    store_path: str | os.PathLike[str],
    max_drop: float,
    inconclusive: str,
    level: float,
) -> GateReport:
    from gpubench.gate import require_measured
    from gpubench.history import gate_against_history, read_store

    if not 0 <= max_drop < 1:
        raise UsageError(f"--max-drop must be in [0, 1), got {max_drop}")
    runs = (current,) if isinstance(current, Results) else tuple(current)
    for run in runs:
        require_measured(run, "CURRENT")
    store = read_store(store_path)
    return gate_against_history(runs, store.entries, str(store_path), max_drop=max_drop,
                                inconclusive=inconclusive, level=level, notes=store.notes)


def write_report(
    runs: Results | Sequence[Results],
    out: str | os.PathLike[str],
    *,
    lang: str = "en",
    labels: Sequence[str] | None = None,
    traces: Sequence[str | os.PathLike[str] | None] | None = None,
) -> Path:
    """Write the markdown page (tables, findings, PNG plots beside it) for one or more runs;
    returns its path. Reads the results alone: no torch, no GPU. ``traces``: each run's
    trace file (:func:`write_trace`), linked from the page."""
    from gpubench.report import page

    listed = [runs] if isinstance(runs, Results) else list(runs)
    return _written(out, lambda: page.write_report(listed, Path(out), lang, labels=labels,
                                                      traces=traces))


def _written(out: str | os.PathLike[str], write: Callable[[], Path]) -> Path:
    """``write()``'s path, checked writable first; an ``OSError`` as one line."""
    check_writable(out)
    try:
        return write()
    except WriteError:
        raise  # one line already, with where the file was kept
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None


def write_trace(results: Results, out: str | os.PathLike[str]) -> Path:
    """Write the run as one Chrome trace event file (ui.perfetto.dev, chrome://tracing):
    a process per mode's parent and worker, a track per client running at once, a slice per
    client phase, the devices' counters; its path. Reads the results alone."""
    from gpubench.report.trace import write_trace as write

    return _written(out, lambda: write(results, out))


def with_value(config: RunConfig, parameter: str, value: Any) -> RunConfig:
    """``config`` with one option (named as the command line's, with underscores) set."""
    from gpubench.options import SWEEP, option_for
    from gpubench.run.sweep import SWEEPABLE

    if parameter not in SWEEPABLE:
        raise UsageError(f"cannot sweep {parameter!r}: choose from {', '.join(SWEEPABLE)}")
    place, _, name = (option_for(parameter, SWEEP).field or "").rpartition(".")
    if place == "train":  # the option table's field: a TrainConfig's or RunConfig's own
        if parameter == "samples_per_client":
            value = SampleSizes.parse(value)
        out = replace(config, train=replace(config.train, **{name: value}))
    else:
        out = replace(config, **{name: value})
    out.validate()
    return out


def sweep_points(
    parameter: str,
    points: Sequence[tuple[Any, RunConfig]],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    progress: Progress | None = None,
    command: str = "",
    accuracy_rounds: int = 0,
    accuracy_target: float | None = None,
) -> Sweep:
    """:func:`sweep` over configs made already, one per value (``gpubench sweep``'s)."""
    from gpubench.run.sweep import (
        SUMMARY_FILE,
        default_out_dir,
        prepare_points,
        run_sweep,
        with_reference,
    )

    points = [(v, with_reference(parameter, c)) for v, c in points]
    folder = Path(out_dir) if out_dir is not None else default_out_dir()
    check_writable(folder / SUMMARY_FILE)
    # Every point is checked before any runs; one whose memory plan refuses it is not started.
    prepared = prepare_points(points, prepare_checked)
    return run_sweep(
        parameter, points, folder,
        compare_fn=_measure_point, progress=progress, command=command,
        prepared=prepared, accuracy_rounds=accuracy_rounds, accuracy_target=accuracy_target,
    )


def _measure_point(config: RunConfig, *, progress: Any = None, command: str = "",
                   prepared: Any = None) -> Results:
    return compare(config, progress=progress, command=command, prepared=prepared,
                   counterfactual=False)


def sweep(
    config: RunConfig,
    parameter: str,
    values: Sequence[Any],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    progress: Progress | None = None,
    accuracy_rounds: int = 0,
    accuracy_target: float | None = None,
) -> Sweep:
    """``compare`` once per value of one parameter (``"batch_size"``, ``"clients"``, ...,
    named as the command line's option), each point's results written under ``out_dir``
    (default ``results/sweep-<UTC time>/``) as soon as it ends. Stops after an interrupted
    point, keeping what was measured; :func:`gpubench.run.sweep.summarize` derives the table.
    """
    points = [(v, with_value(config, parameter, v)) for v in values]
    return sweep_points(parameter, points, out_dir, progress=progress,
                        accuracy_rounds=accuracy_rounds, accuracy_target=accuracy_target)
