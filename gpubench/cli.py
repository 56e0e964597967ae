"""The command line: ``main(argv) -> int``; parsing, exit codes and the one interrupt policy.

Bad input exits 2 before any work; a file that cannot be written after the work exits 1 with
one line that names where its content was kept instead.

Every command runs under :func:`sigterm_as_interrupt`: SIGTERM (what ``timeout`` and CI
runners send) stops a command the way Ctrl-C does, as a ``KeyboardInterrupt`` that unwinds
through every ``finally`` (workers, the MPS daemon, the terminal), and the command writes what
it measured. The exit status is then 130 for Ctrl-C and 143 for SIGTERM, for every command.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType, ModuleType
from typing import TYPE_CHECKING

from gpubench.commands import COMMANDS
from gpubench.commands.progress import close_open_displays
from gpubench.errors import USER_ERRORS
from gpubench.machine.isolation import bound_openmp_wait
from gpubench.output import WriteError
from gpubench.version import __version__

if TYPE_CHECKING:
    from gpubench.config import RunConfig

INTERRUPTED = 130  # 128 + SIGINT
TERMINATED = 128 + signal.SIGTERM  # 143

terminated = threading.Event()
"""Set when SIGTERM arrived under :func:`sigterm_as_interrupt` (the interrupt was a SIGTERM)."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises ``KeyboardInterrupt`` in the main thread (and sets
    :data:`terminated`); the handler before it is restored after. Outside the main thread
    (where no handler can be set) the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        terminated.set()
        raise KeyboardInterrupt

    terminated.clear()
    before = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


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


def run_config(argv: Sequence[str]) -> RunConfig:
    """The :class:`~gpubench.config.RunConfig` that ``gpubench compare ARGV`` would run (for
    scripts that take compare's options); bad options raise ``ConfigError``."""
    from gpubench.commands.arguments import add_run_arguments, config_from_args
    from gpubench.config import ConfigError

    class Strict(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise ConfigError(message)

    parser = Strict(prog="gpubench compare", add_help=False)
    add_run_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    bound_openmp_wait()  # before anything loads torch (the library's runs do the same)
    parser, modules = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    with sigterm_as_interrupt():
        try:
            code = int(modules[args.command].run(args))
        except USER_ERRORS as exc:
            close_open_displays()  # the one line of the error goes below a finished display
            print(f"gpubench {args.command}: error: {exc}", file=sys.stderr)
            return 2
        except WriteError as exc:  # after the work: the line says where its output was kept
            close_open_displays()
            print(f"gpubench {args.command}: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            close_open_displays()
            print("gpubench: interrupted", file=sys.stderr)
            code = INTERRUPTED
        finally:
            close_open_displays()  # a progress display a command left open gives the terminal back
    # A command reports an interrupt it caught (what it measured is written) as 130.
    return TERMINATED if code == INTERRUPTED and terminated.is_set() else code
