"""Execution modes, one module each, looked up by name (heavy or optional ones lazily)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from gpubench.config import ConfigError
from gpubench.modes.base import Mode, ModeFailure, NotApplicable, Plan, RoundOutput
from gpubench.modes.facts import FACTS
from gpubench.results import ModeFacts

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
    "FACTS",
    "REGISTRY",
    "Mode",
    "ModeFailure",
    "NotApplicable",
    "Plan",
    "RoundOutput",
    "check_modes",
    "has_daemons",
    "interleaved_blocks",
    "mode_class",
    "mode_facts",
    "with_mps_rows",
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


def mode_facts(name: str) -> ModeFacts:
    """What mode ``name`` is (a ``@counterfactual`` row: its base's), from the table where it
    has an entry (no import), else from its class."""
    base = name.split("@", 1)[0]
    facts = FACTS.get(base)
    return facts if facts is not None else mode_class(base).facts


def has_daemons(mode: str) -> bool:
    """Whether ``mode`` keeps daemons alive between its rounds: interleaved with other modes,
    their idle processes would run under the other modes' clocks."""
    return mode_facts(mode).daemons


def interleaved_blocks(modes: Sequence[str], reference: str = "serial") -> tuple[tuple[str, ...], ...]:
    """The groups of modes that take turns round by round, one group after another.

    Every mode without daemons takes turns in the first group; each mode with daemons gets a
    group of its own with ``reference`` beside it, so that its ratio is still paired with
    reference rounds run next to it and no daemon idles under another mode's clock. A first
    group holding only the reference is dropped when another group holds it too.
    """
    plain = tuple(m for m in modes if not has_daemons(m))
    daemons = [m for m in modes if has_daemons(m)]
    ref = (reference,) if reference in modes else ()
    blocks = [plain] if plain else []
    blocks += [(*ref, m) for m in daemons]
    if len(blocks) > 1 and blocks[0] == ref:
        blocks.pop(0)
    return tuple(blocks)


def with_mps_rows(modes: tuple[str, ...]) -> tuple[str, ...]:
    """``--mps on``: each mode that has an MPS twin followed by it (once)."""
    out: list[str] = []
    for m in modes:
        out.append(m)
        twin = mode_facts(m).mps_twin
        if twin and twin not in modes:
            out.append(twin)
    return tuple(out)
