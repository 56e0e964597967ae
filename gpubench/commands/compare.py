"""``gpubench compare``: the same federated round under each mode, side by side."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
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
    with_mps_rows,
)
from gpubench.errors import UsageError
from gpubench.results import STATUS_FAILED, Results, write_results

HELP = "run the same federated round under each execution mode and compare them"


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
                   "the update's size, still called the same (default 1e-3 on CPU slots, "
                   "0.1 on CUDA, 4x that for vectorized on CUDA)")
    m.add_argument("--timeout", type=float, default=None,
                   help="seconds a round may take in the process modes (a mode that takes "
                   "longer fails; worker start-up gets at least 300 s)")
    m.add_argument("--interleave", action="store_true",
                   help="run the modes round by round (A B C A B C ...) so drift hits all alike")
    m.add_argument("--sample-interval", type=float, default=0.1,
                   help="seconds between monitor samples; 0 turns monitoring off (default 0.1)")
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None,
                   help="results JSON (default results/<UTC time>-<case>.json)")
    o.add_argument("--report", default=None, help="also write a markdown report to this path")
    o.add_argument("--lang", default="en", choices=("en", "zh"), help="report language")
    o.add_argument("--gate", default=None, metavar="BASELINE",
                   help="gate the run against a results or expectations file")
    o.add_argument("--max-drop", type=float, default=0.10,
                   help="with --gate: tolerated speedup drop (default 0.10)")
    o.add_argument("--strict", action="store_true", help="with --gate: inconclusive fails")
    o.add_argument("--junit", default=None, help="with --gate: write JUnit XML here")
    o.add_argument("--plan", action="store_true",
                   help="print the memory plan (each process's estimated peak) and exit "
                   "without training (exit 2 when the run cannot fit)")


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
    if chunk is not None and chunk < 1:
        raise ConfigError(f"--vectorize-chunk must be >= 1, got {chunk}")
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
        workers=args.workers,
        workers_per_device=args.workers_per_device,
        warmup=args.warmup,
        rounds=args.rounds,
        tolerance=args.tolerance,
        timeout_s=args.timeout,
        interleave=args.interleave,
        sample_interval_s=interval or None,
        options=options,
    )
    config.validate()
    return config


def default_out(case: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in case)[:40]
    return Path("results") / f"{stamp}-{safe}.json"


def check_writable(path: Path, flag: str = "--out") -> None:
    """Fail before measuring, not after, when the results cannot be written."""
    if path.exists() and path.is_dir():
        raise UsageError(f"{flag} {path} is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write {flag} {path}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK):
        raise UsageError(f"cannot write {flag} {path}: {parent} is not writable")


terminated = threading.Event()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (what CI timeouts and ``timeout`` send) stops a run the way Ctrl-C does:
    every worker stops and what was measured is written; the exit status is then 143."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        terminated.set()
        raise KeyboardInterrupt

    terminated.clear()
    before = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def sampler_factory_or_none() -> Any:
    """The monitor's sampler factory (kept as a function: sweep and scripts share it)."""
    from gpubench.monitor import create_sampler

    return create_sampler


def write_outputs(results: Results, args: argparse.Namespace, out: Path) -> int:
    from gpubench.findings import compute_findings
    from gpubench.report.findings import format_findings
    from gpubench.report.tables import format_summary_table

    path = write_results(results, out)
    print(format_summary_table(results))
    findings = format_findings(compute_findings(results), lang=args.lang)
    if findings:
        print("\n" + findings)
    print(f"\nresults: {path}")
    code = 1 if run_failed(results) else 0
    if getattr(args, "verbose", False):
        for m in results.modes:
            if m.error_detail:
                print(f"\n{m.name}: {m.error}\n{m.error_detail}", file=sys.stderr)
    if args.report:
        from gpubench.report.page import write_report

        print(f"report: {write_report([results], args.report, lang=args.lang)}")
    if args.gate:
        from gpubench.commands.gate import run_gate
        from gpubench.report.gate_pages import format_gate_report

        report = run_gate(results, args.gate, max_drop=args.max_drop, strict=args.strict,
                          junit_path=args.junit)
        print(format_gate_report(report))
        code = max(code, report.exit_code)
    return code


def run_failed(results: Results) -> bool:
    """A mode failed, or computed something other than serial's result."""
    return any(m.status == STATUS_FAILED or m.same_result is False for m in results.modes)


def counterfactuals(results: Results, prepared: Any, progress: Any, command: str) -> Results:
    """The run plus its counterfactual rows (gpubench.run.explain), measured the same way."""
    from gpubench.run.explain import with_counterfactuals
    from gpubench.run.harness import compare

    def rerun(config: RunConfig, prep: Any, rename: Any) -> Results:
        def shown(mode: str, *a: Any, **k: Any) -> None:
            progress(rename(mode), *a, **k)

        return compare(config, progress=shown, sampler_factory=sampler_factory_or_none(),
                       command=command, prepared=prep)

    return with_counterfactuals(results, prepared, rerun)


def print_plan(config: RunConfig) -> int:
    """``--plan``: the memory estimate as a table; 0 if the run fits, else 2 and why."""
    from gpubench.run.prepare import prepare

    prepared = prepare(config, check_fit=False)
    assert prepared.memory is not None
    print(prepared.memory.table())
    reason = prepared.memory.refusal()
    if reason is not None:
        print(f"gpubench: {reason}", file=sys.stderr)
        return 2
    return 0


def run(args: argparse.Namespace) -> int:
    from gpubench.run.harness import compare, prepare
    from gpubench.train.pipeline import check_pipeline

    config = config_from_args(args)
    if getattr(args, "plan", False):
        return print_plan(config)
    out = Path(args.out) if args.out else default_out(config.case)
    check_writable(out)
    if args.report:
        check_writable(Path(args.report), "--report")
    if args.gate and not Path(args.gate).is_file():
        raise UsageError(f"--gate {args.gate}: no such file")
    prepared = prepare(config)
    check_pipeline(config.train.pipeline, prepared.case.input_shape,
                   any(d.is_cuda for d in prepared.devices))
    command = "gpubench " + shlex.join(getattr(args, "argv", []))
    from gpubench.commands.progress import open_progress, work_for

    with sigterm_as_interrupt(), open_progress(work_for(config), quiet=args.quiet) as progress:
        results = compare(config, progress=progress, sampler_factory=sampler_factory_or_none(),
                          command=command, prepared=prepared)
        if getattr(args, "counterfactual", "auto") == "auto" and not results.interrupted:
            results = counterfactuals(results, prepared, progress, command)
    code = write_outputs(results, args, out)
    if results.interrupted:
        print("gpubench: interrupted; what was measured is in the results file", file=sys.stderr)
        return 143 if terminated.is_set() else 130
    return code
