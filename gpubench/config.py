"""Run configuration: frozen, validated, with messages a user can act on."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
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


DATA_PLACES = ("device", "host")
LOADERS = ("tensor", "dataloader")
LOADER_STARTS = ("forkserver", "spawn", "fork")
AUGMENTS = ("none", "crop-flip")
CLIENT_SETUPS = ("reuse", "fresh")
OPTIMIZERS = ("sgd", "adam", "adamw")
AMP_MODES = ("off", "bf16", "fp16")
PRESETS = ("none", "flower-like")
CIFAR10_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                   "data_batch_5", "test_batch")


def cifar_folder(path: str) -> str:
    """The folder holding ``cifar-10-batches-py`` (torchvision's layout), or a ConfigError."""
    for root in (path, os.path.dirname(path.rstrip("/"))):
        folder = os.path.join(root, "cifar-10-batches-py")
        if os.path.isdir(folder):
            if not any(os.path.isfile(os.path.join(folder, b)) for b in CIFAR10_BATCHES):
                raise ConfigError(f"--dataset cifar10:{path}: {folder} holds no CIFAR-10 batch "
                                  f"file ({', '.join(CIFAR10_BATCHES)})")
            return root
    raise ConfigError(f"--dataset cifar10:{path}: no folder cifar-10-batches-py there (the "
                      "python version of CIFAR-10, as torchvision's CIFAR10 downloads it)")


@dataclass(frozen=True)
class PipelineConfig:
    """How a client gets its batches and steps, beyond the idealised default (data on the
    device as two tensors, a model built once per worker, plain SGD): the parts of a real
    client's pipeline, each one an option; identical in every mode."""

    data: str = "device"  # where a client's dataset lives between steps
    pin_memory: bool = False  # host data: page-locked batches, copied without blocking
    loader: str = "tensor"  # index two tensors, or iterate a torch DataLoader
    loader_workers: int = 0
    persistent_workers: bool = False
    loader_start: str = "forkserver"  # how the loader's worker processes start
    augment: str = "none"
    client_setup: str = "reuse"  # fresh: model, optimizer and loader built per client, per round
    optimizer: str = "sgd"
    amp: str = "off"
    torch_threads: int | None = None  # per worker process; None: the slot's cores (CPU)
    sync_loss: bool = False  # loss.item() every step
    dataset: str | None = None  # "cifar10:PATH"
    preset: str = "none"

    @property
    def idealised(self) -> bool:
        """The pipeline every mode of gpubench was first written for (vectorized's too)."""
        return replace(self, torch_threads=None, preset="none") == PipelineConfig()

    @property
    def cifar_root(self) -> str | None:
        return self.dataset.split(":", 1)[1] if self.dataset else None

    @classmethod
    def preset_values(cls, name: str) -> dict[str, Any]:
        """What ``--preset`` sets (options given on the command line win)."""
        if name == "flower-like":
            return {"data": "host", "loader": "dataloader", "loader_workers": 2,
                    "augment": "crop-flip", "client_setup": "fresh", "sync_loss": True}
        return {}

    def validate(self) -> None:
        for flag, value, allowed in (
            ("--data", self.data, DATA_PLACES), ("--loader", self.loader, LOADERS),
            ("--loader-start", self.loader_start, LOADER_STARTS),
            ("--augment", self.augment, AUGMENTS), ("--client-setup", self.client_setup,
                                                      CLIENT_SETUPS),
            ("--optimizer", self.optimizer, OPTIMIZERS), ("--amp", self.amp, AMP_MODES),
            ("--preset", self.preset, PRESETS),
        ):
            if value not in allowed:
                raise ConfigError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")
        if self.loader_workers < 0:
            raise ConfigError(f"--loader-workers must be >= 0, got {self.loader_workers}")
        if self.loader == "tensor" and (self.loader_workers or self.persistent_workers):
            raise ConfigError("--loader-workers and --persistent-workers need --loader dataloader")
        if self.persistent_workers and not self.loader_workers:
            raise ConfigError("--persistent-workers needs --loader-workers K with K >= 1")
        if self.pin_memory and self.data != "host":
            raise ConfigError("--pin-memory needs --data host (device data is not copied)")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"--torch-threads must be >= 1, got {self.torch_threads}")
        if self.dataset is not None:
            kind, _, path = self.dataset.partition(":")
            if kind != "cifar10" or not path:
                raise ConfigError(f"--dataset must be cifar10:PATH, got {self.dataset!r}")
            cifar_folder(path)


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
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    # Bytes of client data a worker keeps (None: every client's, if the plan finds room);
    # beyond it a client's data is made again each time it trains (its "data" phase).
    data_budget: int | None = None

    def validate(self) -> None:
        self.pipeline.validate()
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
    # None: from the run's measured noise floor, never under 1e-3 on CPU slots or 0.1 on
    # CUDA (gpubench.run.equivalence.decide_tolerance); a number: that, for every mode.
    tolerance: float | None = None
    timeout_s: float | None = None
    # The modes take turns round by round (see interleaved_blocks); False: one after another.
    interleave: bool = True
    sample_interval_s: float | None = 0.1  # None: monitoring off
    mps: str = "off"  # on: each process mode also runs with CUDA MPS (a "+mps" row)
    options: dict[str, Any] = field(default_factory=dict)  # mode-specific extras (ray, ...)

    def validate(self) -> None:  # noqa: C901 - one check per option, in the options' order
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


# Modes that keep daemons alive between their rounds (Ray's raylet, GCS and workers;
# Flower's engine on Ray): interleaved with other modes, their idle processes would run under
# the other modes' clocks.
DAEMON_MODES = frozenset({"ray", "flower"})


def has_daemons(mode: str) -> bool:
    """Whether ``mode`` (or its base, for a ``+mps`` or ``@counterfactual`` row) keeps daemons."""
    return mode.split("@", 1)[0].split("+", 1)[0] in DAEMON_MODES


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
