"""Importing the module a spec names: a file (``path/to/file.py``) or a dotted module."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from gpubench.cases.seeds import derive_seed
from gpubench.config import ConfigError


def import_target(target: str, spec: str, flag: str = "--case", add_dir: bool = False) -> ModuleType:
    """The module ``target`` names; errors are ConfigErrors naming ``flag`` and ``spec``.

    ``add_dir``: put a file's directory first on ``sys.path`` before importing it, as Flower
    does with an app's directory, so that the file can import its sibling modules.
    """
    if not target.endswith(".py"):
        try:
            return importlib.import_module(target)
        except ImportError as exc:
            raise ConfigError(f"{flag} {spec!r}: cannot import {target}: {exc}") from None
    path = Path(target).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"{flag} {spec!r}: no such file {target}")
    if add_dir and str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    mod_name = f"_gpubench_case_{derive_seed(str(path)):x}"
    module = sys.modules.get(mod_name)
    if module is not None:
        return module
    file_spec = importlib.util.spec_from_file_location(mod_name, path)
    if file_spec is None or file_spec.loader is None:
        raise ConfigError(f"{flag} {spec!r}: cannot load {target} as Python")
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[mod_name] = module
    try:
        file_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[mod_name]
        raise ConfigError(f"{flag} {spec!r}: {target} failed to import: {exc}") from None
    return module


def import_attribute(text: str, spec: str, flag: str = "--case", add_dir: bool = False) -> object:
    """``NAME`` of ``module:NAME`` or ``path/file.py:NAME``."""
    target, _, attr = text.rpartition(":")
    if not target or not attr:
        raise ConfigError(f"{flag} {spec!r}: expected package.module:NAME or path/file.py:NAME")
    module = import_target(target, spec, flag, add_dir)
    if not hasattr(module, attr):
        raise ConfigError(f"{flag} {spec!r}: {target} has no attribute {attr!r}")
    return getattr(module, attr)
