"""``gpubench doctor``: what this machine offers for the modes, and what will bite."""

from __future__ import annotations

import argparse
import json

HELP = "show the GPUs, drivers, flags and limits of this machine, with findings"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print JSON (with a findings list: code, level, facts, message, hint)")
    p.add_argument("--lang", default="en", choices=("en", "zh"), help="language of the output")


def run(args: argparse.Namespace) -> int:
    from gpubench.api import doctor
    from gpubench.report.doctor import doctor_json, format_doctor

    report = doctor()
    if args.json:
        print(json.dumps(doctor_json(report, args.lang), indent=1, sort_keys=True,
                         ensure_ascii=False))
    else:
        print(format_doctor(report, lang=args.lang))
    return 0
