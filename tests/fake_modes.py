"""Modes for testing the harness's scheduling without processes: serial's training (so every
result is real and serial's), a log of what the harness asked of each mode, and failures on
cue. ``register`` puts them into the mode registry under names of their own."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from gpubench.modes import REGISTRY, ModeFailure, NotApplicable, RoundOutput
from gpubench.modes.serial import SerialMode

# What the harness asked, in order: (mode, call, round index of the run's schedule or -1).
LOG: list[tuple[str, str, int]] = []


@dataclass(frozen=True)
class Script:
    """What a scripted mode does besides training serially. Rounds count from 0 over the
    whole schedule (warm-up rounds first)."""

    start_fails: str | None = None  # a ModeFailure with this reason from start()
    not_applicable: str | None = None  # a NotApplicable with this reason from start()
    round_fails: int | None = None  # this round raises ModeFailure (e.g. a worker died)
    round_interrupted: int | None = None  # this round is hit by Ctrl-C
    drops_client: int | None = None  # every round leaves this client out
    on_round: Callable[[str, int], None] | None = None  # called as each round begins


class ScriptedMode(SerialMode):
    name: ClassVar[str] = "scripted"
    script: ClassVar[Script] = Script()

    def start(self) -> None:
        self.step = 0
        LOG.append((self.name, "start", -1))
        if self.script.start_fails:
            raise ModeFailure(self.script.start_fails)
        if self.script.not_applicable:
            raise NotApplicable(self.script.not_applicable)
        super().start()

    def run_round(self, global_state: torch.Tensor, fingerprints: torch.Tensor) -> RoundOutput:
        step, self.step = self.step, self.step + 1
        LOG.append((self.name, "round", step))
        if self.script.on_round is not None:
            self.script.on_round(self.name, step)
        if step == self.script.round_fails:
            raise ModeFailure("worker 1 (pid 4242) died with signal SIGKILL")
        if step == self.script.round_interrupted:
            raise KeyboardInterrupt
        out = super().run_round(global_state, fingerprints)
        if self.script.drops_client is not None:
            out.clients = [c for c in out.clients if c.client != self.script.drops_client]
        return out

    def close(self) -> None:
        LOG.append((self.name, "close", -1))
        super().close()


def register(monkeypatch: pytest.MonkeyPatch, **scripts: Script) -> tuple[str, ...]:
    """Scripted modes named ``fake-<key>`` in the registry for this test; their names."""
    LOG.clear()
    module = sys.modules[__name__]
    names = []
    for key, script in scripts.items():
        name = f"fake-{key}"
        attr = f"Fake_{key}"
        cls = type(attr, (ScriptedMode,), {"name": name, "script": script})
        monkeypatch.setattr(module, attr, cls, raising=False)
        monkeypatch.setitem(REGISTRY, name, f"{__name__}:{attr}")
        names.append(name)
    return tuple(names)


def calls(mode: str | None = None) -> list[tuple[str, str, int]]:
    """The log without repeated closes (close must be safe to call twice), of one mode or all."""
    out: list[tuple[str, str, int]] = []
    for entry in LOG:
        if entry[1] == "close" and (entry[0], "close", -1) in out:
            continue
        if mode is None or entry[0] == mode:
            out.append(entry)
    return out
