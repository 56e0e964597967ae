"""Run configuration: frozen, validated, with messages a user can act on."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

# The words an option accepts live with the option table; config names them from there.
from gpubench.options import (
    AMP_MODES,
    ASSIGN_POLICIES,
    AUGMENTS,
    CLIENT_SETUPS,
    DATA_PLACES,
    DEFAULT_MODES,
    LOADER_STARTS,
    LOADERS,
    MPS_SETTINGS,
    OPTIMIZERS,
    PRESETS,
    flag_of,
)


class ConfigError(ValueError):
    """Bad input from the user; the CLI prints it on one line and exits 2."""




def _any(value: Any) -> bool:
    return True


@dataclass(frozen=True)
class Rule:
    """What one field of a config holds: its type, its range, and the plain forms that stand
    for a typed value (``512`` or ``"256..1024"`` for a :class:`SampleSizes`)."""

    flag: str  # the command line's option: messages name it, and the field where it differs
    types: tuple[type, ...]
    need: str = ""  # the range in words, after "must be"
    ok: Callable[[Any], bool] = _any
    optional: bool = False  # None allowed (a default decided later)
    plain: Callable[[Any], Any] | None = None  # a plain form to the typed value
    plain_types: tuple[type, ...] = ()
    words: str = ""  # what a value may be, where the types alone do not say it
    each: type | None = None  # the type of every item (a tuple's)

    def label(self, name: str) -> str:
        if not self.flag or self.flag == "--" + name.replace("_", "-"):
            return self.flag or name
        return f"{self.flag} ({name})"

    def kinds(self) -> str:
        if self.words:
            return self.words
        names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                 dict: "a dict", tuple: "a tuple"}  # fmt: skip
        kinds = [names.get(t, f"a {t.__name__}") for t in self.types if t is not int or
                 float not in self.types]
        return " or ".join(kinds + ["None"] * self.optional)


def _is(value: Any, types: tuple[type, ...]) -> bool:
    """``isinstance``, except that True and False are no numbers here."""
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


def _integer(flag: str, low: int | None = None, optional: bool = False) -> Rule:
    if low is None:
        return Rule(flag, (int,), optional=optional)
    return Rule(flag, (int,), f">= {low}", lambda v: v >= low, optional)


def _number(flag: str, need: str, ok: Callable[[float], bool], optional: bool = False) -> Rule:
    return Rule(flag, (int, float), need, lambda v: math.isfinite(v) and ok(v), optional)


def _choice(flag: str, allowed: Sequence[str]) -> Rule:
    return Rule(flag, (str,), f"one of {', '.join(allowed)}", lambda v: v in allowed)


def _flag(flag: str) -> Rule:
    return Rule(flag, (bool,))


def typed(config: Any, rules: Mapping[str, Rule]) -> dict[str, Any]:
    """``config``'s fields as ``rules`` type them: a plain form made the typed value, any other
    value of a wrong type a ``ConfigError`` that names the field; returns what changed."""
    changed = {}
    for name, rule in rules.items():
        value = getattr(config, name) if not isinstance(config, Mapping) else config.get(name)
        if value is None and rule.optional:
            continue
        if rule.plain is not None and _is(value, rule.plain_types):
            try:
                value = changed[name] = rule.plain(value)
            except ConfigError as exc:  # the parser's message, naming the field
                raise ConfigError(str(exc).replace(rule.flag, rule.label(name), 1)) from None
            except (ValueError, TypeError):
                raise ConfigError(f"{rule.label(name)} must be {rule.kinds()}, got {value!r}") from None
        if not _is(value, rule.types) or (
            rule.each is not None and not all(_is(v, (rule.each,)) for v in value or ())
        ):
            raise ConfigError(f"{rule.label(name)} must be {rule.kinds()}, got {value!r}")
    return changed


def in_range(config: Any, rules: Mapping[str, Rule]) -> None:
    """A ``ConfigError`` naming the first field of ``config`` outside its rule's range."""
    typed(config, rules)
    for name, rule in rules.items():
        value = getattr(config, name) if not isinstance(config, Mapping) else config.get(name)
        if not (value is None and rule.optional) and not rule.ok(value):
            raise ConfigError(f"{rule.label(name)} must be {rule.need}, got {value!r}")


def _make_typed(config: Any, rules: Mapping[str, Rule]) -> None:
    for name, value in typed(config, rules).items():
        object.__setattr__(config, name, value)  # frozen: set once, while it is made


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
            raise ConfigError(f"{flag_of('partition')} dirichlet:ALPHA needs ALPHA > 0, got {m.group(1)!r}")
        raise ConfigError(f"{flag_of('partition')} must be 'iid' or 'dirichlet:ALPHA', got {text!r}")


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
            raise ConfigError(f"{flag_of('samples_per_client')} must be N or LOW..HIGH, got {s!r}")
        low = int(m.group(1))
        high = int(m.group(2)) if m.group(2) else low
        if low < 1 or high < low:
            raise ConfigError(f"{flag_of('samples_per_client')} needs 1 <= LOW <= HIGH, got {s!r}")
        return cls(low, high)


CIFAR10_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                   "data_batch_5", "test_batch")


def cifar_folder(path: str) -> str:
    """The folder holding ``cifar-10-batches-py`` (torchvision's layout), or a ConfigError."""
    for root in (path, os.path.dirname(path.rstrip("/"))):
        folder = os.path.join(root, "cifar-10-batches-py")
        if os.path.isdir(folder):
            if not any(os.path.isfile(os.path.join(folder, b)) for b in CIFAR10_BATCHES):
                raise ConfigError(f"{flag_of('dataset')} cifar10:{path}: {folder} holds no CIFAR-10 batch "
                                  f"file ({', '.join(CIFAR10_BATCHES)})")
            return root
    raise ConfigError(f"{flag_of('dataset')} cifar10:{path}: no folder cifar-10-batches-py there (the "
                      "python version of CIFAR-10, as torchvision's CIFAR10 downloads it)")


_PIPELINE_RULES = {
    "data": _choice(flag_of("data"), DATA_PLACES),
    "pin_memory": _flag(flag_of("pin_memory")),
    "loader": _choice(flag_of("loader"), LOADERS),
    "loader_workers": _integer(flag_of("loader_workers"), 0),
    "persistent_workers": _flag(flag_of("persistent_workers")),
    "loader_start": _choice(flag_of("loader_start"), LOADER_STARTS),
    "augment": _choice(flag_of("augment"), AUGMENTS),
    "client_setup": _choice(flag_of("client_setup"), CLIENT_SETUPS),
    "optimizer": _choice(flag_of("optimizer"), OPTIMIZERS),
    "amp": _choice(flag_of("amp"), AMP_MODES),
    "torch_threads": _integer(flag_of("torch_threads"), 1, optional=True),
    "sync_loss": _flag(flag_of("sync_loss")),
    "dataset": Rule(flag_of("dataset"), (str,), optional=True),
    "preset": _choice(flag_of("preset"), PRESETS),
}


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

    def __post_init__(self) -> None:
        _make_typed(self, _PIPELINE_RULES)

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
        in_range(self, _PIPELINE_RULES)
        if self.loader == "tensor" and (self.loader_workers or self.persistent_workers):
            raise ConfigError(f"{flag_of('loader_workers')} and {flag_of('persistent_workers')} need "
                              f"{flag_of('loader')} dataloader")
        if self.persistent_workers and not self.loader_workers:
            raise ConfigError(f"{flag_of('persistent_workers')} needs {flag_of('loader_workers')} K "
                              "with K >= 1")
        if self.pin_memory and self.data != "host":
            raise ConfigError(f"{flag_of('pin_memory')} needs {flag_of('data')} host (device data is "
                              "not copied)")
        if self.dataset is not None:
            kind, _, path = self.dataset.partition(":")
            if kind != "cifar10" or not path:
                raise ConfigError(f"{flag_of('dataset')} must be cifar10:PATH, got {self.dataset!r}")
            cifar_folder(path)


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, flag: str) -> int:
    """Bytes from ``512M``, ``2G``, ``1.5g``, ``0`` or a plain number of bytes."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", str(text))
    if not m:
        raise ConfigError(f"{flag} must be a size such as 512M or 2G, got {text!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def _sizes_ok(s: SampleSizes) -> bool:
    return _is(s.low, (int,)) and _is(s.high, (int,)) and 1 <= s.low <= s.high


def _partition_ok(p: Partition) -> bool:
    if p.kind == "iid":
        return p.alpha is None
    return p.kind == "dirichlet" and _is(p.alpha, (int, float)) and p.alpha > 0  # type: ignore[operator]


_TRAIN_RULES = {
    "batch_size": _integer(flag_of("batch_size"), 1),
    "local_epochs": _integer(flag_of("local_epochs"), 1),
    "samples": Rule(flag_of("samples_per_client"), (SampleSizes,), "1 <= LOW <= HIGH", _sizes_ok,
                    plain=SampleSizes.parse, plain_types=(int, str),
                    words="N, 'LOW..HIGH' or a SampleSizes"),
    "lr": _number(flag_of("lr"), "> 0", lambda v: v > 0),
    "momentum": _number(flag_of("momentum"), "in [0, 1)", lambda v: 0 <= v < 1),
    "partition": Rule(flag_of("partition"), (Partition,), "'iid' or 'dirichlet:ALPHA' with ALPHA > 0",
                      _partition_ok, plain=Partition.parse, plain_types=(str,),
                      words="'iid', 'dirichlet:ALPHA' or a Partition"),
    "seed": _integer(flag_of("seed")),
    "pipeline": Rule("", (PipelineConfig,)),
    "data_budget": _integer(flag_of("data_budget"), 0, optional=True),
}


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

    def __post_init__(self) -> None:
        _make_typed(self, _TRAIN_RULES)

    def validate(self) -> None:
        self.pipeline.validate()
        in_range(self, _TRAIN_RULES)


def _mode_names(value: str | list[str]) -> tuple[str, ...]:
    return parse_modes(value) if isinstance(value, str) else tuple(value)


_RUN_RULES = {
    "case": Rule(flag_of("case"), (str,), "a case's name", lambda v: bool(v.strip())),
    "clients": _integer(flag_of("clients"), 1),
    "train": Rule("", (TrainConfig,)),
    "devices": Rule(flag_of("devices"), (str,)),
    "assign": _choice(flag_of("assign"), ASSIGN_POLICIES),
    "modes": Rule(flag_of("modes"), (tuple,), plain=_mode_names, plain_types=(str, list), each=str,
                  words="mode names (a tuple, or a string 'serial,threaded')"),
    "workers": _integer(flag_of("workers"), 1),
    "workers_per_device": _integer(flag_of("workers_per_device"), 1),
    "warmup": _integer(flag_of("warmup"), 0),
    "rounds": _integer(flag_of("rounds"), 1),
    "tolerance": _number(flag_of("tolerance"), ">= 0", lambda v: v >= 0, optional=True),
    "timeout_s": _number(flag_of("timeout"), "> 0 seconds", lambda v: v > 0, optional=True),
    "interleave": _flag(flag_of("interleave")),
    "sample_interval_s": _number(flag_of("sample_interval"), "between 0.001 and 60 seconds (0 turns "
                                 "it off)", lambda v: 0.001 <= v <= 60, optional=True),
    "mps": _choice(flag_of("mps"), MPS_SETTINGS),
    "profile_ops": _flag(flag_of("profile_ops")),
    "options": Rule("", (dict,)),
}

# RunConfig.options that gpubench's modes read (other keys are a mode's own).
_OPTION_RULES = {
    "gpus_per_worker": _number(flag_of("gpus_per_worker"), ">= 0 (a whole number above 1)",
                               lambda v: v >= 0 and (v <= 1 or v == int(v)), optional=True),
    "cpus_per_worker": _number(flag_of("cpus_per_worker"), ">= 0", lambda v: v >= 0, optional=True),
    "ray_address": Rule(flag_of("ray_address"), (str,), optional=True),
    "vectorize_chunk": _integer(flag_of("vectorize_chunk"), 1, optional=True),
}


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
    # One more round per mode after its measured ones, with torch.profiler on in every worker
    # (ModeResult.profiled); in no statistic.
    profile_ops: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # mode-specific extras (ray, ...)

    def __post_init__(self) -> None:
        _make_typed(self, _RUN_RULES)
        typed(self.options, _OPTION_RULES)

    def validate(self) -> None:
        """Every field's type and range (:data:`_RUN_RULES`, the train's and the options'
        too); a ``ConfigError`` names the first that is wrong."""
        self.train.validate()
        in_range(self, _RUN_RULES)
        in_range(self.options, _OPTION_RULES)
        if not self.modes:
            raise ConfigError(f"{flag_of('modes')} names no mode")
        if len(set(self.modes)) != len(self.modes):
            raise ConfigError(f"{flag_of('modes')} names a mode twice: {','.join(self.modes)}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        train = d.pop("train")
        train["samples_per_client"] = str(self.train.samples)
        del train["samples"]
        train["partition"] = str(self.train.partition)
        d.update(train)
        d["modes"] = list(self.modes)
        return d


def parse_modes(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ConfigError(f"{flag_of('modes')} names no mode")
    return names
