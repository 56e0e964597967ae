"""The command line: ``main(argv) -> int``; parsing and exit codes, no logic."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from gpubench import __version__
from gpubench.commands import COMMANDS
from gpubench.commands.progress import close_open_displays
from gpubench.errors import USER_ERRORS
from gpubench.machine.isolation import bound_openmp_wait


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse prints usage plus the message; keep it to one line and exit 2.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"gpubench.commands.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"gpubench.commands.{name}":
            return None
        raise


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = _Parser(
        prog="gpubench",
        description="Benchmarks and diagnostics for GPU parallelism in federated learning.",
    )
    parser.add_argument("--version", action="version", version=f"gpubench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    modules: dict[str, ModuleType] = {}
    for name in COMMANDS:
        module = _load(name)
        if module is None:
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        modules[name] = module
    return parser, modules


def main(argv: Sequence[str] | None = None) -> int:
    bound_openmp_wait()  # before anything loads torch
    parser, modules = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(modules[args.command].run(args))
    except USER_ERRORS as exc:
        close_open_displays()  # the one line of the error goes below a finished display
        print(f"gpubench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        close_open_displays()
        print("gpubench: interrupted", file=sys.stderr)
        return 130
    finally:
        close_open_displays()  # a progress display a command left open gives the terminal back
