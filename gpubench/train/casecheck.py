"""What a case must satisfy before anything starts: its clients' data, and one step.

Bad data is bad input (``ConfigError``: one line naming the case, the client and what is
wrong; exit 2). The parent makes and checks a bounded sample of clients (all of them in a
small run); a worker checks the same way every client it makes
(:class:`gpubench.train.clientdata.ClientData`). The real sample counts found here are the FedAvg
weights of the run. One probe step on client 0 also tells whether the case's
training draws from torch's global RNG (Dropout does), which decides whether threads can
reproduce serial's result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gpubench.cases import Case
from gpubench.config import ConfigError, TrainConfig

# The bounded sample of clients the parent makes and checks in full before a run.
CHECK_CLIENTS = 64
CHECK_BYTES = 32 << 20
# cross_entropy's default ignore_index: a label that counts for nothing.
IGNORE_INDEX = -100
# Samples of client 0 the probe step trains on.
PROBE_SAMPLES = 4


@dataclass(frozen=True)
class CaseFacts:
    sizes: tuple[int, ...]  # samples each client really has (or, beyond the checked, asked for)
    draws_global_rng: bool
    data_bytes_per_sample: int = 0  # the largest of the checked clients
    activation_bytes_per_sample: int = 0
    checked: int = 0  # clients made and checked in the parent (the first ones)


def _shape(t: object) -> str:
    return "x".join(str(d) for d in t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


def check_client_data(case: Case, spec: str, client: int, x: object, y: object) -> int:
    """The number of samples of a client's ``(x, y)``, or a ConfigError saying what is wrong."""
    where = f"case {spec!r}, client {client}"
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ConfigError(
            f"{where}: make_data must return two tensors (x, y), got "
            f"{type(x).__name__} and {type(y).__name__}"
        )
    if x.dim() == 0 or y.dim() == 0:
        raise ConfigError(f"{where}: x and y need a sample dimension (got {_shape(x)}, {_shape(y)})")
    n = int(x.shape[0])
    if n == 0:
        raise ConfigError(f"{where}: make_data returned no samples")
    if int(y.shape[0]) != n:
        raise ConfigError(f"{where}: x has {n} samples but y has {int(y.shape[0])}")
    if not torch.is_floating_point(x):
        raise ConfigError(f"{where}: x must be a floating-point tensor, got {x.dtype}")
    if case.input_shape and tuple(x.shape[1:]) != tuple(case.input_shape):
        want = "x".join(str(d) for d in case.input_shape)
        raise ConfigError(
            f"{where}: samples are {'x'.join(str(d) for d in x.shape[1:])}, the model takes {want}"
        )
    if case.loss is None and (torch.is_floating_point(y) or y.dim() != 1):
        raise ConfigError(
            f"{where}: the default loss (cross entropy) needs y as one integer class per "
            f"sample, got {y.dtype} of shape {_shape(y)}"
        )
    counted = y[y != IGNORE_INDEX] if case.loss is None else y
    if case.loss is None and counted.numel() and (
        int(counted.min()) < 0 or int(counted.max()) >= case.num_classes
    ):
        raise ConfigError(
            f"{where}: labels must be in 0..{case.num_classes - 1} (or {IGNORE_INDEX}, "
            f"ignored), got {int(counted.min())}..{int(counted.max())}"
        )
    return n


@contextlib.contextmanager
def saved_tensor_bytes(exclude: Iterable[torch.Tensor] = ()) -> Iterator[list[int]]:
    """Bytes of the tensors autograd saves for backward inside the block (each storage
    once, none of ``exclude``'s, e.g. the parameters): a batch's activation memory. The
    count is in the yielded list's one item."""
    seen = {(str(t.device), t.untyped_storage().data_ptr()) for t in exclude}
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            storage = t.untyped_storage()
            key = (str(t.device), storage.data_ptr())
            if key not in seen:
                seen.add(key)
                total[0] += storage.nbytes()
        except (RuntimeError, NotImplementedError):  # a tensor without plain storage
            total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield total


@dataclass(frozen=True)
class Probe:
    draws_global_rng: bool
    activation_bytes_per_sample: int  # saved for backward, measured on a few samples


def probe_step(case: Case, spec: str, x: torch.Tensor, y: torch.Tensor) -> Probe:
    """One forward and backward on a few of client 0's samples, on the CPU: whether it drew
    from torch's global RNG, and its activations' bytes per sample. A model that cannot take
    the data is bad input."""
    k = min(PROBE_SAMPLES, int(x.shape[0]))
    x, y = x[:k].clone(), y[:k].clone()  # their own storage: what the step saves is counted
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            model = case.build_model()  # its initialisation draws; the step must not
            model.train()
            before = torch.get_rng_state()
            with saved_tensor_bytes(model.parameters()) as saved:
                loss = case.loss_fn()(model(x), y)
            loss.backward()
        except Exception as exc:
            text = str(exc).strip().splitlines()
            raise ConfigError(
                f"case {spec!r}: the model cannot train on client 0's data: "
                f"{type(exc).__name__}: {text[0] if text else ''}"
            ) from None
        return Probe(not torch.equal(before, torch.get_rng_state()), saved[0] // k)


def make_checked(case: Case, spec: str, cfg: TrainConfig, client: int, n: int) -> tuple[Any, Any]:
    try:
        return case.data(cfg.seed, client, n, cfg.partition)  # type: ignore[no-any-return]
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"case {spec!r}, client {client}: make_data raised {type(exc).__name__}: {exc}"
        ) from None


def check_case(
    case: Case,
    spec: str,
    cfg: TrainConfig,
    requested: Sequence[int],
    after_first: Callable[[CaseFacts], object] | None = None,
) -> CaseFacts:
    """Make and check client 0's data (``after_first`` then sees the sizes and bytes of a
    sample, e.g. to refuse a run that cannot fit before anything more is made), probe one
    step; then make and check a bounded sample of the other clients: the first ones, up to
    ``CHECK_CLIENTS`` and ``CHECK_BYTES``. Every other client is checked when a worker
    makes its data. A case whose clients do not have the samples asked for is checked
    whole: their sizes are the FedAvg weights. (A case that trains itself, its own train or
    a Flower app, is checked by training it: :func:`gpubench.train.apptrainer.check_self_training`.)"""
    x, y = make_checked(case, spec, cfg, 0, requested[0])
    sizes = [check_client_data(case, spec, 0, x, y)]
    per_sample = data_bytes_of(x, y) // sizes[0]
    if after_first is not None:  # activations not measured yet: 0, a lower bound
        after_first(CaseFacts(tuple(sizes) + tuple(requested[1:]), False, per_sample, 0, 1))
    probe = probe_step(case, spec, x, y)
    made = data_bytes_of(x, y)
    del x, y
    exact = sizes[0] == requested[0]
    for client in range(1, len(requested)):
        if exact and (client >= CHECK_CLIENTS or made >= CHECK_BYTES):
            break
        x, y = make_checked(case, spec, cfg, client, requested[client])
        sizes.append(check_client_data(case, spec, client, x, y))
        made += data_bytes_of(x, y)
        per_sample = max(per_sample, data_bytes_of(x, y) // sizes[-1])
        exact = exact and sizes[-1] == requested[client]
    return CaseFacts(
        tuple(sizes) + tuple(requested[len(sizes):]), probe.draws_global_rng, per_sample,
        probe.activation_bytes_per_sample, len(sizes),
    )


def data_bytes_of(x: torch.Tensor, y: torch.Tensor) -> int:
    return int(x.numel() * x.element_size() + y.numel() * y.element_size())
