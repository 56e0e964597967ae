"""Run configuration: frozen, validated, with messages a user can act on."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any


class ConfigError(ValueError):
    """Bad input from the user; the CLI prints it on one line and exits 2."""


DEFAULT_MODES = ("serial", "threaded", "multiprocess", "multi-gpu")
ASSIGN_POLICIES = ("round-robin", "balanced", "dynamic")


@dataclass(frozen=True)
class Partition:
    """How labels are spread over clients: ``iid`` or ``dirichlet:ALPHA`` (label skew)."""

    kind: str = "iid"
    alpha: float | None = None

    def __str__(self) -> str:
        return self.kind if self.alpha is None else f"{self.kind}:{self.alpha:g}"

    @classmethod
    def parse(cls, text: str) -> Partition:
        text = text.strip()
        if text == "iid":
            return cls()
        m = re.fullmatch(r"dirichlet:([0-9.eE+-]+)", text)
        if m:
            try:
                alpha = float(m.group(1))
            except ValueError:
                alpha = -1.0
            if alpha > 0:
                return cls("dirichlet", alpha)
            raise ConfigError(f"--partition dirichlet:ALPHA needs ALPHA > 0, got {m.group(1)!r}")
        raise ConfigError(f"--partition must be 'iid' or 'dirichlet:ALPHA', got {text!r}")


@dataclass(frozen=True)
class SampleSizes:
    """Samples per client: one number, or ``LOW..HIGH`` drawn per client from the seed."""

    low: int
    high: int

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}..{self.high}"

    @classmethod
    def parse(cls, text: str | int) -> SampleSizes:
        s = str(text).strip()
        m = re.fullmatch(r"(\d+)(?:\.\.(\d+))?", s)
        if not m:
            raise ConfigError(f"--samples-per-client must be N or LOW..HIGH, got {s!r}")
        low = int(m.group(1))
        high = int(m.group(2)) if m.group(2) else low
        if low < 1 or high < low:
            raise ConfigError(f"--samples-per-client needs 1 <= LOW <= HIGH, got {s!r}")
        return cls(low, high)


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, flag: str) -> int:
    """Bytes from ``512M``, ``2G``, ``1.5g``, ``0`` or a plain number of bytes."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", str(text))
    if not m:
        raise ConfigError(f"{flag} must be a size such as 512M or 2G, got {text!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


@dataclass(frozen=True)
class TrainConfig:
    """What one client does in one round; identical in every mode."""

    batch_size: int = 128
    local_epochs: int = 1
    samples: SampleSizes = field(default_factory=lambda: SampleSizes(512, 512))
    lr: float = 0.05
    momentum: float = 0.9
    partition: Partition = field(default_factory=Partition)
    seed: int = 0
    # Bytes of client data a worker keeps (None: every client's, if the plan finds room);
    # beyond it a client's data is made again each time it trains (its "data" phase).
    data_budget: int | None = None

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.local_epochs < 1:
            raise ConfigError(f"--local-epochs must be >= 1, got {self.local_epochs}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.data_budget is not None and self.data_budget < 0:
            raise ConfigError(f"--data-budget must be >= 0, got {self.data_budget}")


@dataclass(frozen=True)
class RunConfig:
    case: str = "cnn"
    clients: int = 10
    train: TrainConfig = field(default_factory=TrainConfig)
    devices: str = "auto"
    assign: str = "round-robin"
    modes: tuple[str, ...] = DEFAULT_MODES
    workers: int = 2
    workers_per_device: int = 1
    warmup: int = 1
    rounds: int = 3
    tolerance: float | None = None  # None: 1e-5 on CPU slots, 1e-4 on CUDA
    timeout_s: float | None = None
    interleave: bool = False
    sample_interval_s: float | None = 0.1  # None: monitoring off
    mps: str = "off"  # on: each process mode also runs with CUDA MPS (a "+mps" row)
    options: dict[str, Any] = field(default_factory=dict)  # mode-specific extras (ray, ...)

    def validate(self) -> None:
        self.train.validate()
        if self.clients < 1:
            raise ConfigError(f"--clients must be >= 1, got {self.clients}")
        if self.rounds < 1:
            raise ConfigError(f"--rounds must be >= 1, got {self.rounds}")
        if self.warmup < 0:
            raise ConfigError(f"--warmup must be >= 0, got {self.warmup}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.workers}")
        if self.workers_per_device < 1:
            raise ConfigError(f"--workers-per-device must be >= 1, got {self.workers_per_device}")
        if self.assign not in ASSIGN_POLICIES:
            raise ConfigError(
                f"--assign must be one of {', '.join(ASSIGN_POLICIES)}, got {self.assign!r}"
            )
        if not self.modes:
            raise ConfigError("--modes names no mode")
        if self.mps not in ("off", "on"):
            raise ConfigError(f"--mps must be off or on, got {self.mps!r}")
        if len(set(self.modes)) != len(self.modes):
            raise ConfigError(f"--modes names a mode twice: {','.join(self.modes)}")
        if self.tolerance is not None and not self.tolerance >= 0:
            raise ConfigError(f"--tolerance must be >= 0, got {self.tolerance}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ConfigError(f"--timeout must be > 0 seconds, got {self.timeout_s}")
        if self.sample_interval_s is not None and not 0.001 <= self.sample_interval_s <= 60:
            raise ConfigError(
                f"--sample-interval must be between 0.001 and 60 seconds (0 turns it off), "
                f"got {self.sample_interval_s}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        train = d.pop("train")
        train["samples_per_client"] = str(self.train.samples)
        del train["samples"]
        train["partition"] = str(self.train.partition)
        d.update(train)
        d["modes"] = list(self.modes)
        return d


# The process modes ``--mps on`` measures once more under CUDA MPS, as a row of their own.
MPS_MODES = {"multiprocess": "multiprocess+mps", "multi-gpu": "multi-gpu+mps"}


def with_mps_rows(modes: tuple[str, ...]) -> tuple[str, ...]:
    """``--mps on``: each process mode followed by its MPS twin (once)."""
    out: list[str] = []
    for m in modes:
        out.append(m)
        twin = MPS_MODES.get(m)
        if twin and twin not in modes:
            out.append(twin)
    return tuple(out)


def parse_modes(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ConfigError("--modes names no mode")
    return names
