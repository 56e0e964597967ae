"""Looking a case up by its *spec* string.

A case is named by a spec rather than passed as an object, so that a worker process can load
exactly the same case again: a built-in name (``cnn``), a module attribute
(``package.module:NAME``) or a file (``path/to/file.py:NAME``). ``NAME`` is a :class:`Case`
or a callable returning one.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from gpubench.cases.contract import Case
from gpubench.config import ConfigError
from gpubench.seeds import derive_seed


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
    if ":" not in spec:
        raise ConfigError(
            f"unknown case {spec!r}: built-in cases are {', '.join(sorted(builtins))}; "
            "a case of your own is package.module:NAME or path/to/file.py:NAME"
        )
    target, _, attr = spec.rpartition(":")
    if not attr:
        raise ConfigError(f"--case {spec!r}: missing NAME after ':'")
    if target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"--case {spec!r}: no such file {target}")
        mod_name = f"_gpubench_case_{derive_seed(str(path)):x}"
        module = sys.modules.get(mod_name)
        if module is None:
            file_spec = importlib.util.spec_from_file_location(mod_name, path)
            if file_spec is None or file_spec.loader is None:
                raise ConfigError(f"--case {spec!r}: cannot load {target} as Python")
            module = importlib.util.module_from_spec(file_spec)
            sys.modules[mod_name] = module
            try:
                file_spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[mod_name]
                raise ConfigError(f"--case {spec!r}: {target} failed to import: {exc}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ConfigError(f"--case {spec!r}: cannot import {target}: {exc}") from None
    if not hasattr(module, attr):
        raise ConfigError(f"--case {spec!r}: {target} has no attribute {attr!r}")
    return _from_object(getattr(module, attr), spec)
