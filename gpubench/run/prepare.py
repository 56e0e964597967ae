"""Before a run: validate everything a user can get wrong, and what every mode shares.

Also :func:`open_mode`, one mode at a time for benchmark suites.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from gpubench.cases import Case, load_case
from gpubench.config import RunConfig, TrainConfig
from gpubench.machine.cuda import release_device_memory, reset_peak_memory
from gpubench.machine.devices import Device, resolve_devices, torch_device_in_process
from gpubench.machine.isolation import release_free_heap
from gpubench.modes import Mode, ModeFailure, Plan, RoundOutput, check_modes, mode_class
from gpubench.modes.base import process_rss
from gpubench.results import ClientTiming
from gpubench.run.adjudicate import Retrainer, as_serial, client_trainer, train_fingerprint
from gpubench.run.environment import measuring_environment
from gpubench.run.equivalence import decide_tolerance, relative_diff
from gpubench.run.memplan import TORCH_RUNTIME_BYTES, Inputs, MemoryPlan, check_fits, estimate
from gpubench.train.casecheck import CaseFacts, check_case
from gpubench.train.fl import (
    build_datasets,
    initial_global_state,
    sizes_for,
)
from gpubench.train.pipeline import check_pipeline
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
    # How far one client's update moved with its sums done otherwise (None: not measured).
    noise_floor: float | None = None
    # Why the modes run one after another although interleaving was asked (None: it was not).
    schedule_reason: str | None = None

    @property
    def global_state(self) -> torch.Tensor:
        return self.global_for(0)

    def global_for(self, step: int) -> torch.Tensor:
        """The global model of step ``step`` of the schedule (one kept at a time)."""
        if self._global is None or self._global[0] != step:
            self._global = (step, initial_global_state(self.case, self.config.train.seed, step))
        return self._global[1]

    def tolerance_of(self, mode: type[Mode]) -> float:
        """The mode's one tolerance (:func:`gpubench.run.equivalence.decide_tolerance`): the
        run's, widened on CUDA by what the mode says of its kernels, never past the cap."""
        any_cuda = any(d.is_cuda for d in self.devices)
        return decide_tolerance(self.noise_floor, any_cuda, mode.cuda_tolerance_scale,
                                self.config.tolerance)

    def retrainer(self) -> Retrainer:
        """Serial's computation of any client of any step, again (adjudicating a client)."""
        return Retrainer(self.case, self.config.train, self.devices[0], self.plan.sizes,
                         self.global_for, self.draws_global_rng)

    @property
    def sketch(self) -> Sketch:
        return Sketch(self.plan.state_size, self.config.train.seed)


def prepare(config: RunConfig, check_fit: bool = True) -> Prepared:
    """Validate everything a user can get wrong before anything starts, once, for every way
    a run is started (the command line, the API, the FAQ's plan, a sweep's points): the
    configuration, the modes, the devices, the case, what the data pipeline needs of both,
    the clients' data (a bounded sample; workers check the rest as they make it), and
    whether the run fits in memory (``check_fit``; the estimate is in ``Prepared.memory``
    either way), under the environment every run measures in."""
    measuring_environment()
    config.validate()
    check_modes(config.modes)
    device_set = resolve_devices(config.devices)
    case = load_case(config.case)
    check_pipeline(config.train.pipeline, case.input_shape,
                   any(d.is_cuda for d in device_set.devices))
    first = initial_global_state(case, config.train.seed)
    state_size = int(first.numel())
    requested = sizes_for(config.train, config.clients)
    # A process with torch and the case loaded (a worker's too), less the model kept here.
    base = max(0, (process_rss() or 0) - 4 * state_size)
    schedule_reason: list[str] = []  # set when the interleaved schedule does not fit

    def plan_memory(facts: CaseFacts) -> MemoryPlan:
        def of(cfg: RunConfig) -> MemoryPlan:
            return estimate(Inputs(
                cfg, device_set.devices, facts.sizes, state_size, facts.data_bytes_per_sample,
                facts.activation_bytes_per_sample, base,
                0 if "torch._dynamo" in sys.modules else TORCH_RUNTIME_BYTES,
            ))

        memory = of(config)
        refusal = memory.refusal() if config.interleave else None
        if refusal is not None:  # the modes' workers do not fit at once: one after another?
            sequential = of(replace(config, interleave=False))
            if sequential.refusal() is None:
                schedule_reason[:] = [refusal]
                memory = sequential
            elif check_fit:  # what even one mode at a time needs
                check_fits(sequential)
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
    if schedule_reason:
        config = replace(config, interleave=False)
    plan = Plan(config, device_set.devices, facts.sizes, state_size)
    floor = None
    # Only serial's results are compared; float64 would draw other random numbers (Dropout).
    if "serial" in config.modes and not facts.draws_global_rng:
        floor = measure_noise_floor(case, config.train, device_set.devices[0], facts.sizes,
                                    first)
    settle_parent_device(device_set.devices[0])
    any_cuda = any(d.is_cuda for d in device_set.devices)
    tolerance = decide_tolerance(floor, any_cuda, user=config.tolerance)
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
        floor,
        schedule_reason[0] if schedule_reason else None,
    )


def settle_parent_device(device: Device) -> None:
    """After the checks and the noise floor: their tensors collected and the allocator's cache
    handed back (the process modes' workers share the parent's GPU), and its peak statistics
    started again, so that the float64 floor is no mode's peak."""
    torch_device = torch_device_in_process(device)
    release_device_memory([torch_device])
    reset_peak_memory(torch_device)


# The noise floor trains the client's first NOISE_STEPS batches, and at most NOISE_WORK
# parameter-samples (the cost of a step grows with both): mlp and cnn two whole batches of
# 128, resnet18 (11M parameters) one step of 24 samples, whose float64 convolutions on a CPU
# are slow. A bounded cost whatever the client's size or the case.
NOISE_STEPS = 2
NOISE_WORK = 1 << 28


def measure_noise_floor(
    case: Case,
    train: TrainConfig,
    device: Device,
    sizes: Sequence[int],
    global_state: torch.Tensor,
) -> float | None:
    """How far a correct computation of one client drifts when its sums come out otherwise:
    the largest client trained from ``global_state`` on ``device`` as serial trains it (the
    slot's cores and threads), once in float32 and once in float64, compared as the result
    check compares clients (:func:`gpubench.run.equivalence.relative_diff`).

    None where it cannot be measured the same way: a case with its own training, a pipeline
    other than the idealised client, or a training that raised.
    """
    if case.make_trainer is not None or not train.pipeline.idealised:
        return None
    client = max(range(len(sizes)), key=lambda c: (sizes[c], -c))
    samples = min(NOISE_STEPS * train.batch_size, max(1, NOISE_WORK // global_state.numel()))
    cfg = replace(train, local_epochs=1)
    torch_device = torch_device_in_process(device)
    try:
        with as_serial(device, train):
            data = build_datasets(case, cfg, [client], sizes, torch_device)
            x, y = data[client]
            x, y = x[:samples], y[:samples]
            single = _fingerprint(case, cfg, device, client, x, y, global_state, None)
            double = _fingerprint(case, cfg, device, client, x, y, global_state, torch.float64)
    except Exception:  # a case that cannot train in float64: the lower bound alone
        return None
    return relative_diff(single, double)


def _fingerprint(
    case: Case, cfg: TrainConfig, device: Device, client: int, x: torch.Tensor,
    y: torch.Tensor, global_state: torch.Tensor, dtype: torch.dtype | None,
) -> np.ndarray:
    """The fingerprint of ``client``'s update trained on ``x, y`` (in ``dtype`` if given)."""
    trainer = client_trainer(case, cfg, device, client, (x, y), dtype)
    return train_fingerprint(trainer, client, global_state)


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
