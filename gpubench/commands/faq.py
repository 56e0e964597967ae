"""``gpubench faq``: the FAQ pages, measured by a fixed plan or written from earlier results."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from gpubench.api import check_writable
from gpubench.errors import UsageError

HELP = "measure the FAQ's beliefs (threads, processes, GPUs, batch size, memory) and write the pages"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for faq.<lang>.md, its plots and (when measuring) results/")
    p.add_argument("--lang", default="both", choices=("en", "zh", "both"),
                   help="language of the pages (default both)")
    p.add_argument("--from", dest="from_files", nargs="+", metavar="RESULTS.json",
                   help="write the pages from earlier results files (and sweep summary.json "
                   "files) without measuring; needs no torch")
    p.add_argument("--devices", default="auto",
                   help="auto (every GPU, else 2 CPU slots), cpu:K, cuda, cuda:0,1")
    p.add_argument("--case", default="cnn", help="the case to measure (default cnn)")
    p.add_argument("--quick", action="store_true",
                   help="the short plan: half the samples, a third of the rounds (<= 90 s on "
                   "two CPU slots)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--clients-sweep", metavar="DIR", action="append", default=[],
                   help="a `gpubench sweep --workers-per-device` folder (or its summary.json): "
                   "the measured answer to how many clients per device; repeat it for "
                   "several clients (a compute-heavy and a host-heavy one)")


def _out_dir(text: str, langs: tuple[str, ...]) -> Path:
    """The pages' folder, made; a page that could not be written there fails now."""
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is not a folder")
    for lang in langs:
        check_writable(out / f"faq.{lang}.md", "--out")
    return out


def run(args: argparse.Namespace) -> int:
    langs = ("en", "zh") if args.lang == "both" else (args.lang,)
    from gpubench.report.faq_clients import load_clients_sweep

    # Read first: a bad folder fails before anything runs.
    clients_sweeps = tuple(load_clients_sweep(d) for d in args.clients_sweep)
    if args.from_files:
        from gpubench.faq.inputs import load_inputs

        inputs = load_inputs(args.from_files)  # before anything is written: bad files fail fast
        out = _out_dir(args.out, langs)
    else:
        from gpubench.api import measure_faq
        from gpubench.commands.progress import open_progress, work_for
        from gpubench.run.faq_plan import PLANS, run_config

        out = _out_dir(args.out, langs)
        plan = PLANS["quick" if args.quick else "full"]
        # The display's estimate counts the main comparison's work.
        work = work_for(run_config(plan, args.case, args.devices))
        try:
            with open_progress(work, quiet=args.quiet) as progress:
                inputs = measure_faq(plan, args.case, args.devices, out, progress=progress)
        except KeyboardInterrupt:
            print(f"gpubench: interrupted; what was measured is in {out / 'results'}",
                  file=sys.stderr)
            return 130
    from gpubench.report.faq_page import write_faq

    if clients_sweeps:
        inputs = dataclasses.replace(inputs, clients_sweeps=clients_sweeps)
    for page in write_faq(inputs, out, langs):
        print(page)
    return 0
