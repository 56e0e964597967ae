"""The FAQ's fixed measuring plan: three measurements, each for the questions it answers.

1. **comparison** — serial, threaded, multiprocess (2 workers) and multi-gpu on every device,
   interleaved round by round (drift on a shared machine hits every mode alike), at batch
   128: beliefs 1-3, the performance table, the utilisation plot;
2. **memory run** — serial, multiprocess and multi-gpu, *not* interleaved (each mode's
   processes are then the only ones alive while it is sampled), with as many rounds as give
   the monitor at least ``memory_samples`` samples per mode at the comparison's measured
   round time: belief 5. Its figures come from the pool modes' workers, processes started
   fresh for this run: serial trains in the parent, which has already run the comparison's
   modes and keeps what they left. Multi-gpu's workers (one per device) join multiprocess's
   two so that belief 5 is judged over at least three fresh processes, the fewest that give
   an interval worth a verdict (``gpubench.faq.verdicts.MIN_PROCESSES``); serial stays as
   the reference the result checks compare against;
3. **batch sweep** — serial at batch 32 and 128 (``gpubench.run.sweep``), each point followed by
   ``accuracy_rounds`` progressing FedAvg rounds scored on a held-out set: belief 4 and what
   the bigger batch does to the model.

The sizes come from arithmetic, not from timing this machine (see :func:`estimate_seconds`):
on this project's 2-core machine the cnn trains one sample in about 0.20 ms on one core at
batch 128 (``reports/cpu-slots/compare.json``: 10 clients x 512 samples in 1.03 s), threads
and processes on the same slot take as long as serial (0.99x, 0.96x), multi-gpu on two slots
about half (0.54 s); batch 32 is taken as 1.5x the per-sample cost of batch 128 (an upper
bound for a CPU core; on the H200 it was 3.6x, but there every round is short).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gpubench.config import RunConfig, SampleSizes, TrainConfig
from gpubench.options import options_of
from gpubench.results import Results, write_results
from gpubench.sweep_summary import SweepSummary

COMPARISON_MODES = ("serial", "threaded", "multiprocess", "multi-gpu")
MEMORY_MODES = ("serial", "multiprocess", "multi-gpu")
RESULTS_DIR = "results"

# The arithmetic's inputs (module docstring): seconds, on one core of the 2-core machine.
PER_SAMPLE_S = 1.03 / 5120
BATCH_32_COST = 1.5  # per-sample cost of batch 32 relative to batch 128
POOL_START_S = 1.2  # a process pool's spawn and imports
POOL_FIRST_ROUND_S = 2.0  # extra time of a pool's first (warm-up) round
COMPARE_OVERHEAD_S = 1.0  # environment, sampler, prepare, results file, per compare()
FIXED_S = 10.0  # importing torch and matplotlib, findings, both pages and their plots


@dataclass(frozen=True)
class FaqPlan:
    name: str
    clients: int = 10
    samples: int = 512
    batch: int = 128
    batches: tuple[int, int] = (32, 128)
    workers: int = 2
    warmup: int = 1
    compare_rounds: int = 24
    batch_rounds: int = 15
    accuracy_rounds: int = 5
    memory_samples: int = 20
    memory_rounds_max: int = 8
    sample_interval_s: float = 0.1

    def memory_rounds(self, serial_round_s: float | None) -> int:
        """Rounds for the memory run: ``memory_samples`` samples per mode, 2 to the maximum."""
        if not serial_round_s or serial_round_s <= 0:
            return 3
        wanted = math.ceil(self.memory_samples * self.sample_interval_s / serial_round_s)
        return min(max(wanted, 2), self.memory_rounds_max)


FULL = FaqPlan("full")
# Quick: 6 interleaved rounds (the fewest stats pairs round by round), 5 per batch size (the
# fewest that can refute a belief), 160 samples per client: about 80 s on two idle cores.
QUICK = FaqPlan("quick", samples=160, compare_rounds=6, batch_rounds=5, memory_samples=12)
PLANS = {p.name: p for p in (FULL, QUICK)}


def estimate_seconds(plan: FaqPlan, devices: int = 2, per_sample_s: float = PER_SAMPLE_S) -> float:
    """The plan's wall time on CPU slots of one core each (module docstring's figures)."""
    serial = plan.clients * plan.samples * per_sample_s  # a serial round at batch 128
    step = serial * (1 + 1 + 1.04 + 1 / max(devices, 1))  # the four modes, interleaved
    compare = (plan.warmup + plan.compare_rounds) * step + 2 * (POOL_START_S + POOL_FIRST_ROUND_S)
    mem_rounds = plan.memory_rounds(serial)
    mem_step = serial * (1 + 1.04 + 1 / max(devices, 1))  # serial, multiprocess, multi-gpu
    memory = (plan.warmup + mem_rounds) * mem_step + 2 * (POOL_START_S + POOL_FIRST_ROUND_S)
    both = serial * (1 + BATCH_32_COST)
    sweep = (plan.warmup + plan.batch_rounds) * both
    accuracy = plan.accuracy_rounds * both
    return compare + memory + sweep + accuracy + 4 * COMPARE_OVERHEAD_S + FIXED_S


def run_config(plan: FaqPlan, case: str, devices: str, **changes: Any) -> RunConfig:
    train = TrainConfig(batch_size=changes.pop("batch_size", plan.batch),
                        samples=SampleSizes(plan.samples, plan.samples))
    config = RunConfig(case=case, clients=plan.clients, train=train, devices=devices,
                       modes=COMPARISON_MODES, workers=plan.workers, warmup=plan.warmup,
                       rounds=plan.compare_rounds, interleave=True,
                       sample_interval_s=plan.sample_interval_s)
    return replace(config, **changes)


# What a command line of the plan always says, in this order; every other option follows (in
# the option table's order) where its value is not RunConfig's default.
_ALWAYS = ("case", "clients", "batch_size", "samples_per_client", "devices", "modes", "workers",
           "rounds", "warmup")


def command_for(config: RunConfig, verb: str = "compare", batch: str | None = None,
                extra: tuple[str, ...] = ()) -> str:
    """The gpubench command line that runs ``config`` again, spelled by the option table
    (``batch``: the text of --batch-size instead of the config's, e.g. a sweep's "32,128")."""
    default = RunConfig()
    said = [o for o in options_of(verb) if o.field is not None]
    said = sorted(said, key=lambda o: _ALWAYS.index(o.dest) if o.dest in _ALWAYS else len(_ALWAYS))
    args = [verb]
    for option in said:
        value = option.value_in(config)
        if option.dest == "batch_size" and batch:
            args += [option.flag, batch]
        elif option.dest in _ALWAYS or value != option.value_in(default):
            args += option.argv(value)
    return "gpubench " + shlex.join([*args, *extra])


Progress = Callable[[str, str, int, int], None]


@dataclass(frozen=True)
class Measured:
    """What a plan measured, in the order the FAQ's inputs are gathered from
    (:func:`gpubench.faq.inputs.gather` takes these four)."""

    runs: list[Results]
    summaries: list[SweepSummary]
    files: list[str]
    labels: list[str]


def run_plan(
    plan: FaqPlan,
    case: str,
    devices: str,
    out_dir: Path,
    *,
    progress: Progress | None = None,
) -> Measured:
    """Measure the plan; every results file goes under ``out_dir/results/`` as it is made."""
    from gpubench.run.harness import measure as measure_run
    from gpubench.run.harness import prepare
    from gpubench.run.sweep import run_sweep, summarize, write_summary

    comp_cfg = run_config(plan, case, devices)
    mem_cfg = replace(comp_cfg, modes=MEMORY_MODES, interleave=False)
    batch_cfgs = [(b, replace(comp_cfg, modes=("serial",), interleave=False,
                              rounds=plan.batch_rounds, train=replace(comp_cfg.train, batch_size=b)))
                  for b in plan.batches]
    prepared = prepare(comp_cfg)  # bad input fails here, before anything is measured
    batch_prepared = [prepare(c) for _, c in batch_cfgs]
    folder = out_dir / RESULTS_DIR
    files: list[str] = []
    labels: list[str] = []

    def measure(config: RunConfig, name: str, prep: Any = None) -> Results:
        results = measure_run(config, progress=progress, command=command_for(config),
                              prepared=prep)
        files.append(str(write_results(results, folder / f"{name}.json")))
        labels.append(files[-1])
        if results.interrupted:
            raise KeyboardInterrupt
        return results

    comparison = measure(comp_cfg, "compare", prepared)
    serial = comparison.mode("serial")
    mem_cfg = replace(mem_cfg, rounds=plan.memory_rounds(serial.median_round_s if serial else None))
    memory = measure(mem_cfg, "memory")
    sweep_cmd = command_for(batch_cfgs[0][1], "sweep", ",".join(str(b) for b in plan.batches),
                            ("--accuracy-rounds", str(plan.accuracy_rounds)))
    sweep = run_sweep("batch_size", batch_cfgs, folder / "sweep", compare_fn=measure_run,
                      progress=progress, command=sweep_cmd,
                      prepared=batch_prepared, accuracy_rounds=plan.accuracy_rounds)
    summary = summarize(sweep)
    files += [str(p.path) for p in sweep.points if p.path is not None]
    files.append(str(write_summary(summary, folder / "sweep")))
    if sweep.interrupted:
        raise KeyboardInterrupt
    measured = [(p, p.results) for p in sweep.points if p.results is not None]
    runs = [comparison, memory, *(r for _, r in measured)]
    labels += [str(p.path) if p.path is not None else f"batch {p.value}" for p, _ in measured]
    return Measured(runs, [summary], files, labels)
