"""Argument definitions the commands share, and the one way a run's options become a
:class:`~gpubench.config.RunConfig` (``compare``, ``sweep`` and the command line's
:func:`gpubench.cli.run_config` use it)."""

from __future__ import annotations

import argparse
from typing import Any

from gpubench.config import (
    AMP_MODES,
    AUGMENTS,
    CLIENT_SETUPS,
    DATA_PLACES,
    DEFAULT_MODES,
    LOADER_STARTS,
    LOADERS,
    OPTIMIZERS,
    PRESETS,
    ConfigError,
    Partition,
    PipelineConfig,
    RunConfig,
    SampleSizes,
    TrainConfig,
    parse_modes,
    parse_size,
)
from gpubench.gate import DEFAULT_INCONCLUSIVE, DEFAULT_MAX_DROP, INCONCLUSIVE_POLICIES
from gpubench.modes import with_mps_rows


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments that describe a run (shared with ``sweep``)."""
    g = p.add_argument_group("the round")
    g.add_argument("--case", default="cnn", help="cnn (default), resnet18, mlp, "
                   "package.module:NAME or path/to/file.py:NAME")
    g.add_argument("--clients", type=int, default=10, help="clients per round (default 10)")
    g.add_argument("--batch-size", type=int, default=128, help="local batch size (default 128)")
    g.add_argument("--local-epochs", type=int, default=1, help="local epochs (default 1)")
    g.add_argument("--samples-per-client", default="512",
                   help="N, or LOW..HIGH drawn per client from the seed (default 512)")
    g.add_argument("--lr", type=float, default=None,
                   help="learning rate (default 0.05 for sgd, 0.001 for adam and adamw)")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    g.add_argument("--partition", default="iid", help="iid (default) or dirichlet:ALPHA")
    g.add_argument("--seed", type=int, default=0)
    add_pipeline_arguments(p)
    d = p.add_argument_group("devices and modes")
    d.add_argument("--devices", default="auto",
                   help="auto (every GPU, else 2 CPU slots), cpu:K, cuda, cuda:0,1")
    d.add_argument("--assign", default="round-robin", choices=("round-robin", "balanced", "dynamic"),
                   help="client to device assignment: round-robin (client %% k, default), "
                   "balanced (longest first onto the least loaded), dynamic (a shared queue: a "
                   "worker takes the next client when it is free)")
    d.add_argument("--modes", default=",".join(DEFAULT_MODES),
                   help=f"comma-separated (default {','.join(DEFAULT_MODES)})")
    d.add_argument("--workers", type=int, default=2,
                   help="threads (threaded, streams) or processes (multiprocess) on device 0 "
                   "(default 2)")
    d.add_argument("--mps", default="off", choices=("off", "on"),
                   help="on: run each process mode (multiprocess, multi-gpu) also under CUDA "
                   "MPS, a private daemon gpubench starts and stops, as a '+mps' row beside it "
                   "(not applicable on CPU slots)")
    d.add_argument("--workers-per-device", type=int, default=1,
                   help="worker processes per device in multi-gpu (default 1)")
    r = p.add_argument_group("ray and flower modes")
    r.add_argument("--gpus-per-worker", type=float, default=None, metavar="FRACTION",
                   help="GPUs each Ray actor / Flower client reserves, e.g. 0.25 "
                   "(default 1/workers-per-device on CUDA, 0 on CPU slots)")
    r.add_argument("--cpus-per-worker", type=float, default=None, metavar="N",
                   help="CPUs each Ray actor / Flower client reserves (default: a CPU "
                   "slot's cores; 1 on CUDA)")
    r.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="an existing Ray cluster (auto, host:port, ray://host:port); "
                   "default: start a private local Ray and stop it afterwards")
    add_flower_app_arguments(p)
    mem = p.add_argument_group("memory")
    mem.add_argument("--data-budget", default="auto", metavar="SIZE",
                     help="client data each worker keeps, e.g. 512M or 2G; beyond it a "
                     "client's data is made again each time it trains (timed as its 'data' "
                     "phase). auto (default): every client's, if the plan finds room")
    mem.add_argument("--vectorize-chunk", type=int, default=None, metavar="N",
                     help="vectorized: clients stacked at once (default: as many as fit)")
    m = p.add_argument_group("measuring")
    m.add_argument("--warmup", type=int, default=1, help="warm-up rounds, not counted (default 1)")
    m.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    m.add_argument("--tolerance", type=float, default=None,
                   help="largest difference of a client's update from serial's, relative to "
                   "the update's size, still called the same, for every mode (default: 100x "
                   "the run's measured noise floor, at least 1e-3 on CPU slots and 0.1 on "
                   "CUDA, 4x that for vectorized on CUDA)")
    m.add_argument("--timeout", type=float, default=None,
                   help="seconds a round may take in the process modes (a mode that takes "
                   "longer fails; worker start-up gets at least 300 s)")
    order = m.add_mutually_exclusive_group()
    order.add_argument("--interleave", action="store_true",
                       help="the default: the modes take turns round by round (A B C A B C "
                       "...) so drift hits all alike; ray and flower each take turns with "
                       "serial in a block of their own")
    order.add_argument("--sequential", action="store_true",
                       help="run the modes one after another (serial is timed again at the "
                       "end, to see whether the machine's speed changed)")
    m.add_argument("--sample-interval", type=float, default=0.1,
                   help="seconds between monitor samples; 0 turns monitoring off (default 0.1)")
    m.add_argument("--profile-ops", action="store_true",
                   help="run one more round per mode after the measured ones with "
                   "torch.profiler on in every worker, in no statistic; --trace shows its "
                   "operators under each worker (not ray, flower)")
    m.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    m.add_argument("--verbose", "-v", action="store_true",
                   help="print the whole traceback of a failure (it is in the JSON anyway)")


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """How each client gets its batches and steps (default: the idealised client)."""
    c = p.add_argument_group("the client's pipeline")
    c.add_argument("--preset", default="none", choices=PRESETS,
                   help="flower-like: what a typical Flower client does (host data, a "
                   "DataLoader with 2 workers, crop-flip, fresh setup, loss.item() every "
                   "step); options given as well win")
    c.add_argument("--data", default=None, choices=DATA_PLACES,
                   help="where a client's dataset lives: device (default) or host (every "
                   "batch copied to the device)")
    c.add_argument("--pin-memory", action="store_true", default=None,
                   help="with --data host: page-locked batches, copied without blocking")
    c.add_argument("--loader", default=None, choices=LOADERS,
                   help="tensor (default: index two tensors) or dataloader (a torch "
                   "DataLoader over a per-sample Dataset)")
    c.add_argument("--loader-workers", type=int, default=None, metavar="K",
                   help="the DataLoader's worker processes (default 0)")
    c.add_argument("--persistent-workers", action="store_true", default=None,
                   help="keep the loader's workers between epochs (and rounds, with reuse)")
    c.add_argument("--loader-start", default=None, choices=LOADER_STARTS,
                   help="how loader workers start: forkserver (default; safe under threads), "
                   "spawn, or fork (what torch does on Linux; unsafe from a threaded process)")
    c.add_argument("--augment", default=None, choices=AUGMENTS,
                   help="none (default) or crop-flip (random crop with padding 4, horizontal "
                   "flip, normalise, per sample on the CPU with a DataLoader)")
    c.add_argument("--client-setup", default=None, choices=CLIENT_SETUPS,
                   help="reuse (default: one model per worker) or fresh (model, optimizer and "
                   "loader built each time a client trains, as a Flower client_fn does)")
    c.add_argument("--optimizer", default=None, choices=OPTIMIZERS, help="sgd (default), "
                   "adam or adamw")
    c.add_argument("--amp", default=None, choices=AMP_MODES,
                   help="off (default), bf16 (autocast) or fp16 (autocast and GradScaler; "
                   "CUDA only)")
    c.add_argument("--torch-threads", type=int, default=None, metavar="N",
                   help="torch's intra-op threads per worker process (default: a CPU slot's "
                   "cores; torch's own default on CUDA)")
    c.add_argument("--sync-loss", action="store_true", default=None,
                   help="call loss.item() every step, as most client code does")
    c.add_argument("--dataset", default=None, metavar="cifar10:PATH",
                   help="CIFAR-10 from a folder you have (torchvision's python version, "
                   "not downloaded), partitioned per client like the synthetic data")
    c.add_argument("--counterfactual", default="auto", choices=("auto", "off"),
                   help="auto (default): when threaded is slower than serial on a CPU slot "
                   "of several cores, run it once more with --torch-threads cores/workers "
                   "(and without loader workers) and say what that changed")


def pipeline_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The pipeline options: the preset's values, then every option given on its own."""
    preset = getattr(args, "preset", "none") or "none"
    values: dict[str, Any] = {"preset": preset, **PipelineConfig.preset_values(preset)}
    for name in ("data", "pin_memory", "loader", "loader_workers", "persistent_workers",
                 "loader_start", "augment", "client_setup", "optimizer", "amp",
                 "torch_threads", "sync_loss", "dataset"):
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    return PipelineConfig(**values)


def add_flower_app_arguments(p: argparse.ArgumentParser) -> None:
    """A Flower app as the case (--case flower:path/to/app.py:NAME); written into the spec."""
    f = p.add_argument_group("a Flower app as the case (--case flower:path/to/app.py:NAME)")
    f.add_argument("--run-config", default=None, metavar="'KEY=VALUE ...'",
                   help="the app's context.run_config, in flwr run's syntax and types, e.g. "
                   "'batch-size=32 local-epochs=1'")
    f.add_argument("--train-config", default=None, metavar="'KEY=VALUE ...'",
                   help="the config record of each train message, e.g. 'lr=0.01'")
    f.add_argument("--initial-model", default=None, metavar="module:NAME|file.py:NAME",
                   help="a callable returning the nn.Module the server starts from (needed "
                   "for a Message-API ClientApp; default: a client_fn's get_parameters)")
    f.add_argument("--client-timeout", type=float, default=None, metavar="SECONDS",
                   help="a client app that has not returned after this long fails its mode, "
                   "naming the client (the app then runs in a thread of its own)")


def flower_app_spec(args: argparse.Namespace, case: str, clients: int) -> str:
    from gpubench.cases.flower_app import with_app_options

    return with_app_options(
        case, clients, getattr(args, "run_config", None), getattr(args, "train_config", None),
        getattr(args, "initial_model", None), getattr(args, "client_timeout", None),
    )


def data_budget(text: str) -> int | None:
    return None if str(text).strip() == "auto" else parse_size(text, "--data-budget")


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
        raise ConfigError(f"--sample-interval must be >= 0, got {interval}")
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
        profile_ops=getattr(args, "profile_ops", False),
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


def add_inconclusive_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, prefix: str = ""
) -> None:
    """``--inconclusive pass|fail`` and its older spelling ``--strict`` (hidden: it means
    ``--inconclusive fail``, so that existing CI scripts keep working)."""
    parser.add_argument(
        "--inconclusive",
        choices=INCONCLUSIVE_POLICIES,
        default=DEFAULT_INCONCLUSIVE,
        help=f"{prefix}what an INCONCLUSIVE verdict (the interval straddles the limit) counts "
        "as: pass or fail (default: %(default)s)",
    )
    parser.add_argument(
        "--strict", dest="inconclusive", action="store_const", const="fail", help=argparse.SUPPRESS
    )


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
