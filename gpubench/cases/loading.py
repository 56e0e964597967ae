"""Looking a case up by its *spec* string.

A case is named by a spec rather than passed as an object, so that a worker process can load
exactly the same case again: a built-in name (``cnn``), a module attribute
(``package.module:NAME``) or a file (``path/to/file.py:NAME``). ``NAME`` is a :class:`Case`
or a callable returning one. ``flower:TARGET:NAME`` names a Flower app instead (see
:mod:`gpubench.cases.flower_app`).
"""

from __future__ import annotations

from typing import Any

from gpubench.cases.contract import Case
from gpubench.cases.flower_app import FLOWER_PREFIX, load_flower_case
from gpubench.cases.importing import import_target
from gpubench.config import ConfigError


def builtin_cases() -> dict[str, Case]:
    # The catalogue imports torch; load it only when a case is looked up.
    from gpubench.cases.catalogue import CATALOGUE

    return dict(CATALOGUE)


def _from_object(obj: Any, spec: str) -> Case:
    if isinstance(obj, Case):
        return obj
    if callable(obj):
        made = obj()
        if isinstance(made, Case):
            return made
    raise ConfigError(f"--case {spec!r}: the object is not a gpubench Case (nor returns one)")


def load_case(spec: str) -> Case:
    """Resolve a case spec (see the module docstring); errors are ConfigErrors."""
    builtins = builtin_cases()
    if spec in builtins:
        return builtins[spec]
    if spec.startswith(FLOWER_PREFIX):
        return load_flower_case(spec)
    if ":" not in spec:
        raise ConfigError(
            f"unknown case {spec!r}: built-in cases are {', '.join(sorted(builtins))}; "
            "a case of your own is package.module:NAME or path/to/file.py:NAME, a Flower app "
            "flower:path/to/app.py:NAME"
        )
    target, _, attr = spec.rpartition(":")
    if not attr:
        raise ConfigError(f"--case {spec!r}: missing NAME after ':'")
    module = import_target(target, spec)
    if not hasattr(module, attr):
        raise ConfigError(f"--case {spec!r}: {target} has no attribute {attr!r}")
    return _from_object(getattr(module, attr), spec)
