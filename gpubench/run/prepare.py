"""Before a run: validate everything a user can get wrong, and what every mode shares.

Also :func:`open_mode`, one mode at a time for benchmark suites.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from gpubench.cases import Case, load_case
from gpubench.config import RunConfig
from gpubench.machine.devices import Device, resolve_devices
from gpubench.machine.isolation import release_free_heap
from gpubench.modes import Mode, ModeFailure, Plan, RoundOutput, check_modes, mode_class
from gpubench.modes.base import process_rss
from gpubench.results import ClientTiming
from gpubench.run.equivalence import default_tolerance
from gpubench.run.memplan import TORCH_RUNTIME_BYTES, Inputs, MemoryPlan, check_fits, estimate
from gpubench.train.casecheck import CaseFacts, check_case
from gpubench.train.fl import initial_global_state, sizes_for
from gpubench.train.updates import FINGERPRINT_SIZE, FedAvgUpdate, Sketch


@dataclass
class Prepared:
    """What every mode of a run shares: devices, client sizes, the global models."""

    config: RunConfig
    devices: tuple[Device, ...]
    all_devices: tuple[Device, ...]
    plan: Plan
    case: Case
    weights: list[float]  # FedAvg weights: the samples each client really has
    tolerance: float  # relative, per client (see gpubench.run.equivalence)
    draws_global_rng: bool = False
    _global: tuple[int, torch.Tensor] | None = None
    memory: MemoryPlan | None = None  # the estimate of each process's peak memory

    @property
    def global_state(self) -> torch.Tensor:
        return self.global_for(0)

    def global_for(self, step: int) -> torch.Tensor:
        """The global model of step ``step`` of the schedule (one kept at a time)."""
        if self._global is None or self._global[0] != step:
            self._global = (step, initial_global_state(self.case, self.config.train.seed, step))
        return self._global[1]

    @property
    def sketch(self) -> Sketch:
        return Sketch(self.plan.state_size, self.config.train.seed)


def prepare(config: RunConfig, check_fit: bool = True) -> Prepared:
    """Validate everything a user can get wrong before anything starts: the configuration,
    the devices, the case, the clients' data (a bounded sample; workers check the rest as
    they make it), and whether the run fits in memory (``check_fit``; the estimate is in
    ``Prepared.memory`` either way)."""
    config.validate()
    check_modes(config.modes)
    device_set = resolve_devices(config.devices)
    case = load_case(config.case)
    first = initial_global_state(case, config.train.seed)
    state_size = int(first.numel())
    requested = sizes_for(config.train, config.clients)
    # A process with torch and the case loaded (a worker's too), less the model kept here.
    base = max(0, (process_rss() or 0) - 4 * state_size)

    def plan_memory(facts: CaseFacts) -> MemoryPlan:
        memory = estimate(Inputs(
            config, device_set.devices, facts.sizes, state_size, facts.data_bytes_per_sample,
            facts.activation_bytes_per_sample, base,
            0 if "torch._dynamo" in sys.modules else TORCH_RUNTIME_BYTES,
        ))
        if check_fit:
            check_fits(memory)
        return memory

    # Once client 0's data is known (without activations: a lower bound), a run that cannot
    # fit is refused before more is made; then with the probe step's activations.
    if case.trains_itself:  # its own train, or a Flower app: checked by training it
        from gpubench.train.apptrainer import check_self_training

        facts = check_self_training(case, config.case, config.train, requested)
    else:
        facts = check_case(case, config.case, config.train, requested, plan_memory)
    release_free_heap()  # what the probe step built and freed
    memory = plan_memory(facts)
    plan = Plan(config, device_set.devices, facts.sizes, state_size)
    tolerance = (
        config.tolerance
        if config.tolerance is not None
        else default_tolerance(any(d.is_cuda for d in device_set.devices))
    )
    return Prepared(
        config,
        device_set.devices,
        device_set.all_devices,
        plan,
        case,
        [float(s) for s in facts.sizes],
        tolerance,
        facts.draws_global_rng,
        (0, first),
        memory,
    )


def fedavg(out: RoundOutput) -> FedAvgUpdate:
    """FedAvg's update over the global model, from the workers' partial sums (float64:
    the same whichever worker, or mode, added which client), read as it is needed."""
    if not out.partials:
        raise ModeFailure("no partial sum was returned")
    return FedAvgUpdate(out.partials, float(sum(out.weights)))


def fedavg_update(out: RoundOutput) -> torch.Tensor:
    """:func:`fedavg`'s update as one float64 vector."""
    return fedavg(out).materialise()


# --- one mode at a time, for benchmark suites -----------------------------------------------


@dataclass
class ModeSession:
    mode: Mode
    prep: Prepared

    def run_round(self) -> tuple[float, torch.Tensor, list[ClientTiming]]:
        """One round plus FedAvg: (seconds, aggregated state, client timings)."""
        global_state = self.prep.global_state
        fingerprints = torch.full(
            (self.prep.plan.clients, FINGERPRINT_SIZE), math.nan, dtype=torch.float64
        )
        t0 = time.perf_counter()
        out = self.mode.run_round(global_state, fingerprints)
        aggregate = (global_state.to(torch.float64) + fedavg_update(out)).to(torch.float32)
        return time.perf_counter() - t0, aggregate, out.clients


@contextlib.contextmanager
def open_mode(config: RunConfig, name: str, prepared: Prepared | None = None) -> Iterator[ModeSession]:
    """Start one mode (cold start included) and close it, whatever happens."""
    prep = prepared or prepare(config)
    mode = mode_class(name)(prep.plan)
    try:
        mode.start()
        yield ModeSession(mode, prep)
    finally:
        mode.close()
