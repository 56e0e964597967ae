"""A client beyond the tolerance, judged by its own sensitivity instead of failed at once.

The tolerance (:func:`gpubench.run.equivalence.decide_tolerance`) comes from a noise floor
measured on one client's first batch or two. Over a whole local training a correct float32
computation of some clients can land much farther from serial's: where a ReLU's
pre-activation (or a max) sits at its kink, a last-bit difference in an earlier sum takes the
other branch, and the rest of the training amplifies it. The arithmetic is correct and the
path is chaotic, so the same client's valid variants land as far.

For such a client (the worst few of a mode, only those beyond the tolerance) serial's
computation of it is run again in this process, as serial runs it (the slot's cores and
threads, the same seeds and data), in valid variants (:data:`VARIANTS`): unchanged (it must
land on serial's update), from the round's global model with every weight moved by one unit
in the last place up, down, or either way by a seeded sign, with one torch thread (another
reduction order) on a CPU slot of several cores, and in float64 where the case draws no
random numbers from the global RNG. Their distances from serial's update are the client's
spread: a mode within ``ADJUDICATION_MARGIN`` times it (and under ``ADJUDICATED_MAX``, half a
wrong client's distance, whatever the spread) agrees; beyond it, it differs. A float64
reference alone would not settle a flip (whichever float32 run takes the other branch lands
far from it); the client's own spread does. Measured on CPU slots (cnn, lr 0.2, 10 clients,
batch 64): vectorized's client 2 in the third round differed by 5.4e-3, as did serial from
weights moved down a bit and float64, because three pre-activations of the second
convolution's ReLU, within 1.3e-6 of zero in the fourth step, changed sign (three max-pool
choices with them); at lr 0.5 an mlp's steps amplify a last-bit difference with no ReLU
changing sign.

A case that trains its clients itself (its own ``train``, a Flower app) keeps state this
process cannot set up again: its clients are not adjudicated, the plain tolerance decides,
and the results say so.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from gpubench.cases import Case
from gpubench.config import TrainConfig
from gpubench.machine.devices import Device, torch_device_in_process
from gpubench.machine.isolation import pin_in_process
from gpubench.results import Adjudication, ClientAdjudication
from gpubench.run.equivalence import WRONG_CLIENT_DIFF, relative_diff
from gpubench.train.fl import ClientTrainer, build_datasets, state_tensors
from gpubench.train.updates import FINGERPRINT_SIZE

if TYPE_CHECKING:
    from gpubench.run.equivalence import Comparison, Ledger

# A mode agrees where it lands within twice the farthest valid variant: the variants are a
# few samples of where correct arithmetic lands, not the edge of it.
ADJUDICATION_MARGIN = 2.0
# Whatever the variants do, a client half a wrong client's distance away is not called the
# same.
ADJUDICATED_MAX = WRONG_CLIENT_DIFF / 2
# Clients adjudicated per mode (its worst ones): each costs a handful of trainings.
MAX_ADJUDICATED = 5

VARIANTS = ("again", "last-bit-up", "last-bit-down", "last-bit-mixed", "one-thread", "float64")

Array = np.ndarray


@contextlib.contextmanager
def as_serial(device: Device, train: TrainConfig, threads: int | None = None) -> Iterator[None]:
    """Run the block as serial trains: on the device's cores with its thread count
    (``threads`` instead where given), this process's other threads left alone."""
    me = threading.current_thread()
    spare = {t.native_id for t in threading.enumerate() if t is not me and t.native_id}
    before = torch.get_num_threads()
    try:
        if not device.is_cuda:
            torch.set_num_threads(threads or train.pipeline.torch_threads or len(device.cores))
        with pin_in_process(device, spare):
            yield
    finally:
        torch.set_num_threads(before)


def client_trainer(
    case: Case, cfg: TrainConfig, device: Device, client: int,
    data: tuple[torch.Tensor, torch.Tensor], dtype: torch.dtype | None = None,
) -> ClientTrainer:
    """A trainer of ``client`` alone on ``data`` (in ``dtype`` if given), as serial's."""
    trainer = ClientTrainer(case, cfg, torch_device_in_process(device), device.id, 0, {})
    x, y = data
    if dtype is not None:
        trainer.model.to(dtype)
        trainer.tensors = state_tensors(trainer.model)
        x = x.to(dtype)
    trainer.datasets = {client: (x, y)}
    return trainer


def train_fingerprint(trainer: ClientTrainer, client: int, global_state: torch.Tensor) -> Array:
    """The fingerprint of ``client``'s update trained from ``global_state``."""
    trainer.sink.begin(global_state.to(trainer.torch_device))
    out = torch.full((client + 1, FINGERPRINT_SIZE), math.nan, dtype=torch.float64)
    trainer.run(client, out, fold=False)
    return out[client].numpy().copy()


def last_bit(state: torch.Tensor, how: str, seed: int) -> torch.Tensor:
    """Every weight moved by one unit in the last place: up, down, or ``mixed`` (a seeded
    sign per weight)."""
    up = torch.full_like(state, math.inf)
    if how == "up":
        return torch.nextafter(state, up)
    if how == "down":
        return torch.nextafter(state, -up)
    generator = torch.Generator().manual_seed(seed)
    sign = torch.randint(0, 2, state.shape, generator=generator).to(state.device).bool()
    return torch.nextafter(state, torch.where(sign, up, -up))


@dataclass
class Retrainer:
    """Serial's computation of one client of one round, again and in valid variants."""

    case: Case
    train: TrainConfig
    device: Device
    sizes: Sequence[int]
    global_for: Callable[[int], torch.Tensor]
    draws_global_rng: bool = False

    @property
    def unavailable(self) -> str | None:
        """Why this run's clients cannot be trained again here (None: they can)."""
        if self.case.trains_itself:
            return "the case trains its clients itself (its own train or a Flower app)"
        return None

    def variant_names(self) -> tuple[str, ...]:
        threads = self.train.pipeline.torch_threads or len(self.device.cores)
        return tuple(
            v for v in VARIANTS
            if not (v == "one-thread" and (self.device.is_cuda or threads <= 1))
            and not (v == "float64" and self.draws_global_rng)
        )

    def distances(self, client: int, step: int, serial: Array) -> dict[str, float]:
        """How far each variant of ``client`` in ``step`` lands from serial's fingerprint."""
        cfg = self.train
        torch_device = torch_device_in_process(self.device)
        start = self.global_for(step).clone()
        out: dict[str, float] = {}
        with as_serial(self.device, cfg), contextlib.ExitStack() as stack:
            data = build_datasets(self.case, cfg, [client], self.sizes, torch_device)[client]
            trainer = client_trainer(self.case, cfg, self.device, client, data)
            stack.callback(trainer.close)  # its loaders, if the pipeline keeps them
            for name in self.variant_names():
                if name == "float64":
                    continue
                state = start
                if name.startswith("last-bit-"):
                    state = last_bit(start, name.removeprefix("last-bit-"), cfg.seed + step)
                threads = 1 if name == "one-thread" else None
                with as_serial(self.device, cfg, threads):
                    out[name] = relative_diff(train_fingerprint(trainer, client, state), serial)
            if "float64" in self.variant_names():
                with contextlib.suppress(Exception):  # a case that cannot train in float64
                    double = client_trainer(self.case, cfg, self.device, client, data,
                                            torch.float64)
                    stack.callback(double.close)
                    out["float64"] = relative_diff(train_fingerprint(double, client, start),
                                                   serial)
        return out


@dataclass(frozen=True)
class Suspect:
    """A client of one round beyond the tolerance."""

    step: int
    client: int
    diff: float


def suspects(comparison: Comparison, tolerance: float) -> list[Suspect]:
    """Every client of every round beyond ``tolerance``, the worst first."""
    found = [
        Suspect(step, client, d)
        for step, diffs in comparison.per_step.items()
        for client, d in enumerate(diffs)
        if d > tolerance
    ]
    return sorted(found, key=lambda s: (-s.diff, s.step, s.client))


def judge(
    retrainer: Retrainer,
    beyond: Sequence[Suspect],
    serial: Mapping[int, Array],
    round_of: Callable[[int], int],
) -> Adjudication:
    """Adjudicate the worst few of ``beyond`` (those that could still agree) against their
    valid variants; the rest are left to the plain tolerance."""
    reason = retrainer.unavailable
    if reason is not None:
        return Adjudication(unavailable=reason, left=len(beyond))
    chosen = [s for s in beyond if s.diff < ADJUDICATED_MAX][:MAX_ADJUDICATED]
    judged = []
    try:
        for s in chosen:
            variants = retrainer.distances(s.client, s.step, serial[s.step][s.client])
            spread = max(variants.values(), default=0.0)
            allowed = min(ADJUDICATION_MARGIN * spread, ADJUDICATED_MAX)
            judged.append(ClientAdjudication(s.client, round_of(s.step), s.diff, variants,
                                             allowed, s.diff <= allowed))
    except Exception as exc:  # a case whose client cannot be trained here again
        return Adjudication(unavailable=f"training a client again raised {exc!r}",
                            left=len(beyond))
    return Adjudication(tuple(judged), left=len(beyond) - len(judged))


def adjudicate_mode(
    retrainer: Retrainer,
    comparison: Comparison,
    ledger: Ledger,
    mode: str,
    reference: str,
    steps: Sequence[int],
    tolerance: float,
) -> Adjudication | None:
    """The adjudication of ``mode``'s clients beyond ``tolerance`` (None: none is)."""
    beyond = suspects(comparison, tolerance)
    if not beyond:
        return None
    return judge(retrainer, beyond, ledger.fingerprints[reference], steps.index)


def settled(adjudication: Adjudication | None) -> bool:
    """Every client beyond the tolerance was adjudicated and agrees."""
    return (
        adjudication is not None
        and adjudication.unavailable is None
        and adjudication.left == 0
        and all(c.agrees for c in adjudication.clients)
    )
