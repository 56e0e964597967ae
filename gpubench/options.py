"""The one table of the command line's options for a run: each option's flag, its argparse
``dest``, type, default and help, which commands offer it, whether a sweep may vary it, and
the :class:`~gpubench.config.RunConfig` field it sets.

``compare``'s and ``sweep``'s parsers are built from it (:mod:`gpubench.commands.arguments`),
``sweep``'s parameters (:data:`gpubench.run.sweep.SWEEPABLE`) are derived from it, a config
rebuilt as a command line (:func:`gpubench.run.faq_plan.command_for`) is spelled by it, and
config's messages name options through :func:`flag`: a flag renamed here is renamed everywhere.

This module sits below :mod:`gpubench.config` and imports nothing of gpubench, so that the
words an option accepts (``DATA_PLACES``, ...) live here and config uses them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

DEFAULT_MODES = ("serial", "threaded", "multiprocess", "multi-gpu")
ASSIGN_POLICIES = ("round-robin", "balanced", "dynamic")
DATA_PLACES = ("device", "host")
LOADERS = ("tensor", "dataloader")
LOADER_STARTS = ("forkserver", "spawn", "fork")
AUGMENTS = ("none", "crop-flip")
CLIENT_SETUPS = ("reuse", "fresh")
OPTIMIZERS = ("sgd", "adam", "adamw")
AMP_MODES = ("off", "bf16", "fp16")
PRESETS = ("none", "flower-like")
MPS_SETTINGS = ("off", "on")
# gpubench.gate's policies (a test holds the two alike; gate sits above this module).
INCONCLUSIVE_POLICIES = ("pass", "fail")
DEFAULT_INCONCLUSIVE = "pass"

COMPARE = "compare"
SWEEP = "sweep"
GATE = "gate"
RUN = (COMPARE, SWEEP)  # the commands that run a comparison

# The --help sections, in the order they are shown.
ROUND = "the round"
PIPELINE = "the client's pipeline"
DEVICES = "devices and modes"
RAY = "ray and flower modes"
FLOWER_APP = "a Flower app as the case (--case flower:path/to/app.py:NAME)"
MEMORY = "memory"
MEASURING = "measuring"
ACCURACY = "accuracy"
OUTPUT = "output"
RUN_GROUPS = (ROUND, PIPELINE, DEVICES, RAY, FLOWER_APP, MEMORY, MEASURING)


@dataclass(frozen=True)
class Option:
    """One option of the command line, as argparse takes it and as a config holds it."""

    flag: str
    help: str | None  # None: listed in --help without a line of its own
    group: str  # the --help section (one of the titles above)
    commands: tuple[str, ...] = RUN
    dest: str = ""  # argparse's; "" derives it from the flag
    default: Any = None
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    action: str | None = None  # "store_true", "store_const"; None: takes a value
    const: Any = None
    metavar: str | None = None
    short: str = ""  # a one-letter spelling, e.g. "-q"
    hidden: bool = False  # accepted, not shown in --help
    exclusive: str = ""  # options naming the same word exclude one another
    after: str = ""  # the flag this one works with: its help starts "with FLAG: " where offered
    sweepable: bool = False  # ``sweep`` takes A,B,C for it
    # Where the value lands in a RunConfig: a dotted path ("train.batch_size",
    # "options.ray_address"); None: it sets no field (output, display) or is folded into one.
    field: str | None = None
    switch: Any = None  # a store_true option with a field: the field's value it stands for
    unset: str | None = None  # the text that makes the field None, where None is not the default

    def __post_init__(self) -> None:
        if not self.dest:
            object.__setattr__(self, "dest", self.flag.lstrip("-").replace("-", "_"))

    @property
    def spellings(self) -> tuple[str, ...]:
        return (self.flag, self.short) if self.short else (self.flag,)

    def value_in(self, config: Any) -> Any:
        """The value of :attr:`field` in ``config`` (a RunConfig); a missing option key is None."""
        assert self.field is not None, f"{self.flag} sets no field"
        value = config
        for part in self.field.split("."):
            value = value.get(part) if isinstance(value, dict) else getattr(value, part)
        return value

    def argv(self, value: Any) -> list[str]:
        """The command line's words that give the field ``value``; [] where this option does
        not say it (a switch standing for another value, None without :attr:`unset`)."""
        if self.action == "store_true":
            return [self.flag] if value == self.switch else []
        if value is None:
            return [self.flag, self.unset] if self.unset is not None else []
        if isinstance(value, tuple):
            return [self.flag, ",".join(str(v) for v in value)]
        return [self.flag, str(value)]


def _pipeline(flag: str, help: str, **kw: Any) -> Option:
    dest = flag.lstrip("-").replace("-", "_")
    return Option(flag, help, PIPELINE, field=f"train.pipeline.{dest}", **kw)


def _switch(flag: str, help: str, group: str, **kw: Any) -> Option:
    return Option(flag, help, group, action="store_true", default=False, **kw)


OPTIONS: tuple[Option, ...] = (
    # the round
    Option("--case", "cnn (default), resnet18, mlp, package.module:NAME or path/to/file.py:NAME",
           ROUND, default="cnn", sweepable=True, field="case"),
    Option("--clients", "clients per round (default 10)", ROUND, default=10, type=int,
           sweepable=True, field="clients"),
    Option("--batch-size", "local batch size (default 128)", ROUND, default=128, type=int,
           sweepable=True, field="train.batch_size"),
    Option("--local-epochs", "local epochs (default 1)", ROUND, default=1, type=int,
           sweepable=True, field="train.local_epochs"),
    Option("--samples-per-client", "N, or LOW..HIGH drawn per client from the seed (default 512)",
           ROUND, default="512", sweepable=True, field="train.samples"),
    Option("--lr", "learning rate (default 0.05 for sgd, 0.001 for adam and adamw)", ROUND,
           type=float, sweepable=True, field="train.lr"),
    Option("--momentum", "SGD momentum (default 0.9)", ROUND, default=0.9, type=float,
           field="train.momentum"),
    Option("--partition", "iid (default) or dirichlet:ALPHA", ROUND, default="iid",
           field="train.partition"),
    Option("--seed", None, ROUND, default=0, type=int, field="train.seed"),
    # the client's pipeline
    _pipeline("--preset", "flower-like: what a typical Flower client does (host data, a "
              "DataLoader with 2 workers, crop-flip, fresh setup, loss.item() every step); "
              "options given as well win", default="none", choices=PRESETS),
    _pipeline("--data", "where a client's dataset lives: device (default) or host (every "
              "batch copied to the device)", choices=DATA_PLACES),
    _pipeline("--pin-memory", "with --data host: page-locked batches, copied without blocking",
              action="store_true", switch=True),
    _pipeline("--loader", "tensor (default: index two tensors) or dataloader (a torch "
              "DataLoader over a per-sample Dataset)", choices=LOADERS),
    _pipeline("--loader-workers", "the DataLoader's worker processes (default 0)", type=int,
              metavar="K"),
    _pipeline("--persistent-workers", "keep the loader's workers between epochs (and rounds, "
              "with reuse)", action="store_true", switch=True),
    _pipeline("--loader-start", "how loader workers start: forkserver (default; safe under "
              "threads), spawn, or fork (what torch does on Linux; unsafe from a threaded "
              "process)", choices=LOADER_STARTS),
    _pipeline("--augment", "none (default) or crop-flip (random crop with padding 4, horizontal "
              "flip, normalise, per sample on the CPU with a DataLoader)", choices=AUGMENTS),
    _pipeline("--client-setup", "reuse (default: one model per worker) or fresh (model, "
              "optimizer and loader built each time a client trains, as a Flower client_fn "
              "does)", choices=CLIENT_SETUPS),
    _pipeline("--optimizer", "sgd (default), adam or adamw", choices=OPTIMIZERS),
    _pipeline("--amp", "off (default), bf16 (autocast) or fp16 (autocast and GradScaler; CUDA "
              "only)", choices=AMP_MODES),
    _pipeline("--torch-threads", "torch's intra-op threads per worker process (default: a CPU "
              "slot's cores; torch's own default on CUDA)", type=int, metavar="N"),
    _pipeline("--sync-loss", "call loss.item() every step, as most client code does",
              action="store_true", switch=True),
    _pipeline("--dataset", "CIFAR-10 from a folder you have (torchvision's python version, not "
              "downloaded), partitioned per client like the synthetic data",
              metavar="cifar10:PATH"),
    # compare alone: sweep measures no counterfactual rows.
    Option("--counterfactual", "auto (default): when threaded is slower than serial on a CPU "
           "slot of several cores, run it once more with --torch-threads cores/workers (and "
           "without loader workers) and say what that changed", PIPELINE, commands=(COMPARE,),
           default="auto", choices=("auto", "off")),
    # devices and modes
    Option("--devices", "auto (every GPU, else 2 CPU slots), cpu:K, cuda, cuda:0,1", DEVICES,
           default="auto", field="devices"),
    Option("--assign", "client to device assignment: round-robin (client %% k, default), "
           "balanced (longest first onto the least loaded), dynamic (a shared queue: a worker "
           "takes the next client when it is free)", DEVICES, default="round-robin",
           choices=ASSIGN_POLICIES, field="assign"),
    Option("--modes", f"comma-separated (default {','.join(DEFAULT_MODES)})", DEVICES,
           default=",".join(DEFAULT_MODES), field="modes"),
    Option("--workers", "threads (threaded, streams) or processes (multiprocess) on device 0 "
           "(default 2)", DEVICES, default=2, type=int, sweepable=True, field="workers"),
    Option("--mps", "on: run each process mode (multiprocess, multi-gpu) also under CUDA MPS, "
           "a private daemon gpubench starts and stops, as a '+mps' row beside it (not "
           "applicable on CPU slots)", DEVICES, default="off", choices=MPS_SETTINGS,
           field="mps"),
    Option("--workers-per-device", "worker processes per device in multi-gpu (default 1)",
           DEVICES, default=1, type=int, sweepable=True, field="workers_per_device"),
    # ray and flower modes
    Option("--gpus-per-worker", "GPUs each Ray actor / Flower client reserves, e.g. 0.25 "
           "(default 1/workers-per-device on CUDA, 0 on CPU slots)", RAY, type=float,
           metavar="FRACTION", field="options.gpus_per_worker"),
    Option("--cpus-per-worker", "CPUs each Ray actor / Flower client reserves (default: a CPU "
           "slot's cores; 1 on CUDA)", RAY, type=float, metavar="N",
           field="options.cpus_per_worker"),
    Option("--ray-address", "an existing Ray cluster (auto, host:port, ray://host:port); "
           "default: start a private local Ray and stop it afterwards", RAY,
           metavar="ADDRESS", field="options.ray_address"),
    # a Flower app as the case: these four are written into --case's spec.
    Option("--run-config", "the app's context.run_config, in flwr run's syntax and types, e.g. "
           "'batch-size=32 local-epochs=1'", FLOWER_APP, metavar="'KEY=VALUE ...'"),
    Option("--train-config", "the config record of each train message, e.g. 'lr=0.01'",
           FLOWER_APP, metavar="'KEY=VALUE ...'"),
    Option("--initial-model", "a callable returning the nn.Module the server starts from "
           "(needed for a Message-API ClientApp; default: a client_fn's get_parameters)",
           FLOWER_APP, metavar="module:NAME|file.py:NAME"),
    Option("--client-timeout", "a client app that has not returned after this long fails its "
           "mode, naming the client (the app then runs in a thread of its own)", FLOWER_APP,
           type=float, metavar="SECONDS"),
    # memory
    Option("--data-budget", "client data each worker keeps, e.g. 512M or 2G; beyond it a "
           "client's data is made again each time it trains (timed as its 'data' phase). auto "
           "(default): every client's, if the plan finds room", MEMORY, default="auto",
           metavar="SIZE", field="train.data_budget"),
    Option("--vectorize-chunk", "vectorized: clients stacked at once (default: as many as fit)",
           MEMORY, type=int, metavar="N", field="options.vectorize_chunk"),
    # measuring
    Option("--warmup", "warm-up rounds, not counted (default 1)", MEASURING, default=1,
           type=int, field="warmup"),
    Option("--rounds", "measured rounds (default 3)", MEASURING, default=3, type=int,
           field="rounds"),
    Option("--tolerance", "largest difference of a client's update from serial's, relative to "
           "the update's size, still called the same, for every mode (default: 100x the run's "
           "measured noise floor, at least 1e-3 on CPU slots and 0.1 on CUDA, 4x that for "
           "vectorized on CUDA)", MEASURING, type=float, field="tolerance"),
    Option("--timeout", "seconds a round may take in the process modes (a mode that takes "
           "longer fails; worker start-up gets at least 300 s)", MEASURING, type=float,
           field="timeout_s"),
    _switch("--interleave", "the default: the modes take turns round by round (A B C A B C "
            "...) so drift hits all alike; ray and flower each take turns with serial in a "
            "block of their own", MEASURING, exclusive="order", field="interleave",
            switch=True),
    _switch("--sequential", "run the modes one after another (serial is timed again at the "
            "end, to see whether the machine's speed changed)", MEASURING, exclusive="order",
            field="interleave", switch=False),
    Option("--sample-interval", "seconds between monitor samples; 0 turns monitoring off "
           "(default 0.1)", MEASURING, default=0.1, type=float, field="sample_interval_s",
           unset="0"),
    _switch("--profile-ops", "run one more round per mode after the measured ones with "
            "torch.profiler on in every worker, in no statistic; --trace shows its operators "
            "under each worker (not ray, flower)", MEASURING, field="profile_ops"),
    _switch("--quiet", "no progress display", MEASURING, short="-q"),
    # compare alone: sweep has no use for a traceback it does not print.
    _switch("--verbose", "print the whole traceback of a failure (it is in the JSON anyway)",
            MEASURING, short="-v", commands=(COMPARE,)),
    # compare's output
    Option("--out", "results JSON (default results/<UTC time>-<case>.json)", OUTPUT,
           commands=(COMPARE,)),
    Option("--report", "also write a markdown report to this path", OUTPUT, commands=(COMPARE,)),
    Option("--trace", "also write the run as a Chrome trace (ui.perfetto.dev opens it)", OUTPUT,
           commands=(COMPARE,), metavar="PATH.json"),
    Option("--lang", "report language", OUTPUT, commands=(COMPARE,), default="en",
           choices=("en", "zh")),
    Option("--gate", "gate the run against a results or expectations file", OUTPUT,
           commands=(COMPARE,), metavar="BASELINE"),
    Option("--max-drop", "tolerated speedup drop (default 0.10)", OUTPUT, commands=(COMPARE,),
           default=0.10, type=float, after="--gate"),
    Option("--inconclusive", "what an INCONCLUSIVE verdict (the interval straddles the limit) "
           "counts as: pass or fail (default: %(default)s)", OUTPUT, commands=(COMPARE, GATE),
           default=DEFAULT_INCONCLUSIVE, choices=INCONCLUSIVE_POLICIES, after="--gate"),
    # The older spelling of --inconclusive fail, kept for existing CI scripts.
    Option("--strict", "", OUTPUT, commands=(COMPARE, GATE), dest="inconclusive",
           action="store_const", const="fail", hidden=True),
    Option("--junit", "write JUnit XML here", OUTPUT, commands=(COMPARE,), after="--gate"),
    _switch("--plan", "print the memory plan (each process's estimated peak) and exit without "
            "training (exit 2 when the run cannot fit)", OUTPUT, commands=(COMPARE,)),
    # sweep's accuracy and output
    Option("--accuracy-rounds", "also train R progressing FedAvg rounds per point and report "
           "held-out accuracy after each (default 0: timings only)", ACCURACY,
           commands=(SWEEP,), default=0, type=int, metavar="R"),
    Option("--accuracy-target", "rounds and seconds to reach this accuracy", ACCURACY,
           commands=(SWEEP,), type=float, metavar="ACC", after="--accuracy-rounds"),
    Option("--out-dir", "folder for one results file per point, summary.json and summary.png "
           "(default results/sweep-<UTC time>/)", OUTPUT, commands=(SWEEP,)),
    _switch("--trace", "also write each point's Chrome trace beside its results "
            "(<results>.trace.json)", OUTPUT, commands=(SWEEP,)),
)


def options_of(command: str, groups: tuple[str, ...] | None = None) -> Iterator[Option]:
    """The options ``command`` offers (in the table's order), of ``groups`` if given."""
    for option in OPTIONS:
        if command in option.commands and (groups is None or option.group in groups):
            yield option


def help_for(option: Option, command: str) -> str | None:
    """The option's help in ``command``: "with FLAG: " first where the command offers FLAG."""
    if option.after and any(o.flag == option.after for o in options_of(command)):
        return f"with {option.after}: {option.help}"
    return option.help


_FLAGS: dict[str, str] = {}
for _option in OPTIONS:
    # One dest is one flag wherever it is offered (--strict spells a value of --inconclusive).
    if _option.action != "store_const":
        assert _FLAGS.setdefault(_option.dest, _option.flag) == _option.flag, _option
del _option

SWEEPABLE: dict[str, str] = {o.dest: o.flag for o in OPTIONS if o.sweepable}
"""argparse dest -> flag, for the parameters a sweep may vary."""


def flag_of(dest: str) -> str:
    """The flag of the option whose argparse dest is ``dest`` (what messages name)."""
    return _FLAGS[dest]


def option_for(dest: str, command: str = COMPARE) -> Option:
    """The option ``command`` offers under ``dest`` (a ``KeyError`` if none)."""
    for option in options_of(command):
        if option.dest == dest and option.action != "store_const":
            return option
    raise KeyError(dest)
