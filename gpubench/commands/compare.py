"""``gpubench compare``: the same federated round under each mode, side by side."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from gpubench.api import check_writable, keep_op_traces, run_failed
from gpubench.commands.arguments import add_options, config_from_args
from gpubench.config import RunConfig
from gpubench.errors import UsageError
from gpubench.options import COMPARE
from gpubench.results import Results, write_results

HELP = "run the same federated round under each execution mode and compare them"
INTERRUPTED = 130  # Ctrl-C; the command line makes it 143 when SIGTERM stopped the run


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_options(p, COMPARE)


def write_outputs(results: Results, args: argparse.Namespace, out: Path) -> int:
    from gpubench.findings import compute_findings
    from gpubench.report.findings import format_findings
    from gpubench.report.tables import format_summary_table

    results = keep_op_traces(results, out)  # --profile-ops: the profiler's files beside it
    path = write_results(results, out)
    print(format_summary_table(results))
    findings = format_findings(compute_findings(results), lang=args.lang)
    if findings:
        print("\n" + findings)
    print(f"\nresults: {path}")
    code = 1 if run_failed(results) else 0
    if getattr(args, "verbose", False):
        for m in results.modes:
            if m.error_detail:
                print(f"\n{m.name}: {m.error}\n{m.error_detail}", file=sys.stderr)
    if args.trace:  # before the page, which links it
        from gpubench.api import write_trace

        print(f"trace: {write_trace(results, args.trace)}")
    if args.report:
        from gpubench.report.page import write_report

        traces = [args.trace] if args.trace else None
        print(f"report: {write_report([results], args.report, lang=args.lang, traces=traces)}")
    if args.gate:
        from gpubench.api import check_gate
        from gpubench.report.gate_pages import format_gate_report

        report = check_gate(results, args.gate, max_drop=args.max_drop,
                            inconclusive=args.inconclusive, junit_path=args.junit)
        print(format_gate_report(report))
        code = max(code, report.exit_code)
    return code


def print_plan(config: RunConfig) -> int:
    """``--plan``: the memory estimate as a table; 0 if the run fits, else 2 and why."""
    from gpubench.api import prepare_checked

    prepared = prepare_checked(config, check_fit=False)
    assert prepared.memory is not None
    print(prepared.memory.table())
    reason = prepared.memory.refusal()
    if reason is not None:
        print(f"gpubench: {reason}", file=sys.stderr)
        return 2
    return 0


def run(args: argparse.Namespace) -> int:
    from gpubench.api import compare, default_out, prepare_checked
    from gpubench.commands.progress import open_progress, work_for

    config = config_from_args(args)
    if getattr(args, "plan", False):
        return print_plan(config)
    out = Path(args.out) if args.out else default_out(config.case)
    check_writable(out, "--out")
    for option in ("report", "trace"):
        if getattr(args, option):
            check_writable(getattr(args, option), f"--{option}")
    if args.junit:
        check_writable(args.junit, "--junit")
    if args.gate and not Path(args.gate).is_file():
        raise UsageError(f"--gate {args.gate}: no such file")
    prepared = prepare_checked(config)  # bad input fails here, before the display opens
    with open_progress(work_for(config), quiet=args.quiet) as progress:
        results = compare(config, progress=progress, prepared=prepared,
                          counterfactual=getattr(args, "counterfactual", "auto") == "auto",
                          command="gpubench " + shlex.join(getattr(args, "argv", [])))
    code = write_outputs(results, args, out)
    if results.interrupted:
        print("gpubench: interrupted; what was measured is in the results file", file=sys.stderr)
        return INTERRUPTED
    return code
