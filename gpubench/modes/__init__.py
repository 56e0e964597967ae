"""Execution modes, one module each, looked up by name (heavy or optional ones lazily)."""

from __future__ import annotations

import importlib

from gpubench.config import ConfigError
from gpubench.modes.base import Mode, ModeFailure, NotApplicable, Plan, RoundOutput

# name -> "module:Class"; imported only when the mode is used.
REGISTRY: dict[str, str] = {
    "serial": "gpubench.modes.serial:SerialMode",
    "threaded": "gpubench.modes.threaded:ThreadedMode",
    "multiprocess": "gpubench.modes.multiprocess:MultiprocessMode",
    "multi-gpu": "gpubench.modes.multiprocess:MultiGpuMode",
    "ray": "gpubench.modes.ray_mode:RayMode",
    "flower": "gpubench.modes.flower:FlowerMode",
    "vectorized": "gpubench.modes.vectorized:VectorizedMode",
    "streams": "gpubench.modes.streams:StreamsMode",
    "multiprocess+mps": "gpubench.modes.mps_modes:MultiprocessMpsMode",
    "multi-gpu+mps": "gpubench.modes.mps_modes:MultiGpuMpsMode",
}

__all__ = [
    "REGISTRY",
    "Mode",
    "ModeFailure",
    "NotApplicable",
    "Plan",
    "RoundOutput",
    "check_modes",
    "mode_class",
]


def check_modes(names: tuple[str, ...]) -> None:
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ConfigError(
            f"unknown mode {unknown[0]!r}: choose from {', '.join(REGISTRY)}"
        )


def mode_class(name: str) -> type[Mode]:
    check_modes((name,))
    module_name, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]
