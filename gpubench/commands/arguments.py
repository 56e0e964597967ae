"""Argument definitions the commands share, and the one way a run's options become a
:class:`~gpubench.config.RunConfig` (``compare``, ``sweep`` and the command line's
:func:`gpubench.cli.run_config` use it)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from gpubench.config import (
    ConfigError,
    Partition,
    PipelineConfig,
    RunConfig,
    SampleSizes,
    TrainConfig,
    parse_modes,
    parse_size,
)
from gpubench.gate import DEFAULT_MAX_DROP
from gpubench.modes import with_mps_rows
from gpubench.options import (
    COMPARE,
    GATE,
    PIPELINE,
    RUN_GROUPS,
    Option,
    flag_of,
    help_for,
    options_of,
)


def add_options(
    p: argparse.ArgumentParser,
    command: str,
    groups: tuple[str, ...] | None = None,
    vary: Callable[[Option], Callable[[str], Any]] | None = None,
) -> None:
    """The options ``command`` offers, from the one table (:mod:`gpubench.options`), in its
    sections and order; with ``vary``, a sweepable option's values are parsed by
    ``vary(option)`` and its help says "A,B,C sweeps it"."""
    sections: dict[str, argparse._ArgumentGroup] = {}
    exclusive: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for option in options_of(command, groups):
        if option.group not in sections:
            sections[option.group] = p.add_argument_group(option.group)
        target: Any = sections[option.group]
        if option.exclusive:
            if option.exclusive not in exclusive:
                exclusive[option.exclusive] = target.add_mutually_exclusive_group()
            target = exclusive[option.exclusive]
        target.add_argument(*option.spellings, **_argparse_keywords(option, command, vary))


def _argparse_keywords(
    option: Option, command: str, vary: Callable[[Option], Callable[[str], Any]] | None
) -> dict[str, Any]:
    help_text = help_for(option, command)
    kw: dict[str, Any] = {"dest": option.dest}
    # A store_const option spells a value of another option's dest, whose default holds.
    if option.action != "store_const":
        kw["default"] = option.default
    for name in ("type", "choices", "action", "const", "metavar"):
        if getattr(option, name) is not None:
            kw[name] = getattr(option, name)
    if vary is not None and option.sweepable:
        kw["type"] = vary(option)
        help_text = f"{help_text}; A,B,C sweeps it"
    kw["help"] = argparse.SUPPRESS if option.hidden else help_text
    return kw


def add_run_arguments(p: argparse.ArgumentParser, command: str = COMPARE) -> None:
    """The options that describe a run (``compare``'s, :func:`gpubench.cli.run_config`'s)."""
    add_options(p, command, RUN_GROUPS)


# The pipeline options besides --preset, whose values override the preset's.
_PIPELINE = tuple(o.dest for o in options_of(COMPARE, (PIPELINE,))
                  if o.field is not None and o.dest != "preset")


def pipeline_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The pipeline options: the preset's values, then every option given on its own."""
    preset = getattr(args, "preset", "none") or "none"
    values: dict[str, Any] = {"preset": preset, **PipelineConfig.preset_values(preset)}
    for name in _PIPELINE:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    return PipelineConfig(**values)


def flower_app_spec(args: argparse.Namespace, case: str, clients: int) -> str:
    from gpubench.cases.flower_app import with_app_options

    return with_app_options(
        case, clients, getattr(args, "run_config", None), getattr(args, "train_config", None),
        getattr(args, "initial_model", None), getattr(args, "client_timeout", None),
    )


def data_budget(text: str) -> int | None:
    return None if str(text).strip() == "auto" else parse_size(text, flag_of("data_budget"))


def config_from_args(args: argparse.Namespace, **override: Any) -> RunConfig:
    values = {
        "case": args.case,
        "clients": args.clients,
        "batch_size": args.batch_size,
        "samples": args.samples_per_client,
        **override,
    }
    pipeline = pipeline_from_args(args)
    lr = args.lr if args.lr is not None else (0.05 if pipeline.optimizer == "sgd" else 0.001)
    train = TrainConfig(
        batch_size=values["batch_size"],
        local_epochs=args.local_epochs,
        samples=SampleSizes.parse(values["samples"]),
        lr=lr,
        momentum=args.momentum,
        partition=Partition.parse(args.partition),
        seed=args.seed,
        pipeline=pipeline,
        data_budget=data_budget(getattr(args, "data_budget", "auto")),
    )
    chunk = getattr(args, "vectorize_chunk", None)
    interval = args.sample_interval
    if interval is not None and interval < 0:
        raise ConfigError(f"{flag_of('sample_interval')} must be >= 0, got {interval}")
    options = {k: v for k, v in vars(args).items() if k.startswith("ray_") or k.endswith("_per_worker")}
    if chunk is not None:
        options["vectorize_chunk"] = chunk
    config = RunConfig(
        case=flower_app_spec(args, values["case"], values["clients"]),
        clients=values["clients"],
        train=train,
        devices=args.devices,
        assign=args.assign,
        modes=with_mps_rows(parse_modes(args.modes)) if args.mps == "on" else parse_modes(args.modes),
        mps=args.mps,
        profile_ops=args.profile_ops,
        workers=args.workers,
        workers_per_device=args.workers_per_device,
        warmup=args.warmup,
        rounds=args.rounds,
        tolerance=args.tolerance,
        timeout_s=args.timeout,
        interleave=not getattr(args, "sequential", False),
        sample_interval_s=interval or None,
        options=options,
    )
    config.validate()
    return config


def add_inconclusive_arguments(parser: argparse.ArgumentParser) -> None:
    """``gate``'s ``--inconclusive pass|fail`` and its older spelling ``--strict`` (hidden: it
    means ``--inconclusive fail``, so that existing CI scripts keep working), from the table."""
    for option in options_of(GATE):  # beside gate's own arguments, in no section of their own
        parser.add_argument(*option.spellings, **_argparse_keywords(option, GATE, None))


def fraction(text: str) -> float:
    """A fraction in [0, 1) given as ``0.10`` or ``10%`` (``--max-drop``)."""
    s = text.strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a fraction or a percentage: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (or 0%..99%), got {text!r}")
    return value


def add_fraction_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, help_text: str
) -> None:
    """``--max-drop FRACTION`` (default ``DEFAULT_MAX_DROP``)."""
    parser.add_argument("--max-drop", type=fraction, default=DEFAULT_MAX_DROP,
                        metavar="FRACTION", help=f"{help_text} (default: %(default)s)")
