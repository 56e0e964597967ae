"""``gpubench cases``: the built-in cases and their sizes."""

from __future__ import annotations

import argparse

HELP = "list the built-in cases with their parameter counts"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from gpubench.cases import builtin_cases, count_parameters

    rows = []
    for name, case in builtin_cases().items():
        shape = "x".join(str(s) for s in case.input_shape)
        rows.append([name, f"{count_parameters(case.build_model()):,}", shape, case.description])
    print(tabulate(rows, headers=["case", "parameters", "input", "description"]))
    return 0
