"""``gpubench sweep``: a comparison repeated over the values of one parameter."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpubench.api import check_writable, run_failed
from gpubench.commands.arguments import add_options, config_from_args
from gpubench.commands.progress import open_progress, work_for
from gpubench.errors import UsageError
from gpubench.options import SWEEP, Option
from gpubench.report.trace import trace_path
from gpubench.run.sweep import SWEEPABLE

HELP = "repeat a comparison over the values of one parameter (e.g. --batch-size 32,64,128)"


def _list_of(option: Option) -> Callable[[str], list[Any]]:
    """A sweepable option's parser: "A,B,C", each value parsed as the option's own."""
    convert = option.type

    def parse(text: str) -> list[Any]:
        items = [t.strip() for t in text.split(",")]
        if not any(items):
            raise argparse.ArgumentTypeError(f"no value in {text!r}")
        if not all(items):
            raise argparse.ArgumentTypeError(f"an empty value in {text!r}")
        try:
            values = [convert(t) if convert else t for t in items]
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"a value appears twice in {text!r}")
        return values

    parse.__name__ = f"{option.flag} list"
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    # The sweepable options accept "A,B,C"; exactly one of them may be given several values.
    add_options(p, SWEEP, vary=_list_of)


def swept_parameter(args: argparse.Namespace) -> tuple[str, list[Any], argparse.Namespace]:
    """(dest, values, args with every one-value list made a scalar); one list at most."""
    fixed = argparse.Namespace(**vars(args))
    lists = {}
    for dest in SWEEPABLE:
        value = getattr(args, dest, None)
        if isinstance(value, list):
            if len(value) == 1:
                setattr(fixed, dest, value[0])
            else:
                lists[dest] = value
    if not lists:
        raise UsageError("give one parameter a comma-separated list of values, "
                         "e.g. --batch-size 32,64,128")
    if len(lists) > 1:
        flags = " and ".join(SWEEPABLE[d] for d in lists)
        raise UsageError(f"only one parameter may take a list of values, got {flags}")
    dest, values = next(iter(lists.items()))
    return dest, values, fixed


def run(args: argparse.Namespace) -> int:
    dest, values, fixed = swept_parameter(args)  # before the heavy imports: bad input fails fast
    if args.accuracy_rounds < 0:
        raise UsageError(f"--accuracy-rounds must be >= 0, got {args.accuracy_rounds}")
    if args.accuracy_target is not None and not 0 < args.accuracy_target <= 1:
        raise UsageError(f"--accuracy-target must be in (0, 1], got {args.accuracy_target}")
    from gpubench.api import sweep_points
    from gpubench.report.sweep_page import format_sweep_table, write_sweep_plot
    from gpubench.run.sweep import (
        PLOT_FILE,
        default_out_dir,
        summarize,
        with_reference,
        write_summary,
    )

    configs = [(v, with_reference(dest, config_from_args(
        argparse.Namespace(**{**vars(fixed), dest: v})))) for v in values]
    out_dir = Path(args.out_dir) if args.out_dir else default_out_dir()
    check_writable(out_dir / "summary.json", "--out-dir")
    work = [w for _, c in configs for w in work_for(c)]  # the whole sweep, point by point
    with open_progress(work, quiet=args.quiet) as progress:
        sweep = sweep_points(  # every point is checked before any runs
            dest,
            configs,
            out_dir,
            progress=progress,
            command="gpubench " + shlex.join(getattr(args, "argv", [])),
            accuracy_rounds=args.accuracy_rounds,
            accuracy_target=args.accuracy_target,
        )
    summary = summarize(sweep)
    print(format_sweep_table(summary))
    for p in sweep.points:
        if p.path is not None:  # a refused point wrote nothing
            print(f"results: {p.path}")
        if args.trace and p.path is not None and p.results is not None:
            from gpubench.api import write_trace

            print(f"trace: {write_trace(p.results, trace_path(p.path))}")
    print(f"summary: {write_summary(summary, out_dir)}")
    plot = write_sweep_plot(summary, out_dir / PLOT_FILE)
    print(f"plot: {plot}" if plot else "plot: not drawn (matplotlib is not installed)")
    if sweep.interrupted:
        print("gpubench: interrupted; what was measured is in the out dir", file=sys.stderr)
        return 130  # the command line makes it 143 when SIGTERM stopped the sweep
    # A refused point is an answer (the summary says why), not a failure.
    return 1 if any(p.results is not None and run_failed(p.results) for p in sweep.points) else 0
