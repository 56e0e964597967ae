"""What a case must satisfy before anything starts: every client's data, and one step.

Bad data is bad input (``ConfigError``: one line naming the case, the client and what is
wrong; exit 2), found in the parent before a worker starts. The real sample counts found here
are the FedAvg weights of the run. One probe step on client 0 also tells whether the case's
training draws from torch's global RNG (Dropout does), which decides whether threads can
reproduce serial's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gpubench.cases import Case
from gpubench.config import ConfigError, TrainConfig


@dataclass(frozen=True)
class CaseFacts:
    sizes: tuple[int, ...]  # samples each client really has
    draws_global_rng: bool


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
    if case.loss is None and (int(y.min()) < 0 or int(y.max()) >= case.num_classes):
        raise ConfigError(
            f"{where}: labels must be in 0..{case.num_classes - 1}, got "
            f"{int(y.min())}..{int(y.max())}"
        )
    return n


def probe_step(case: Case, spec: str, x: torch.Tensor, y: torch.Tensor) -> bool:
    """One forward and backward on a few of client 0's samples, on the CPU; whether it drew
    from torch's global RNG. A model that cannot take the data is bad input."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            model = case.build_model()  # its initialisation draws; the step must not
            model.train()
            before = torch.get_rng_state()
            loss = case.loss_fn()(model(x[:2]), y[:2])
            loss.backward()
        except Exception as exc:
            text = str(exc).strip().splitlines()
            raise ConfigError(
                f"case {spec!r}: the model cannot train on client 0's data: "
                f"{type(exc).__name__}: {text[0] if text else ''}"
            ) from None
        return not torch.equal(before, torch.get_rng_state())


def check_case(case: Case, spec: str, cfg: TrainConfig, requested: Sequence[int]) -> CaseFacts:
    """Make every client's data once (and drop it), check it, probe one step."""
    if case.trains_itself:
        return check_self_training(case, spec, cfg, requested)
    sizes = []
    first: tuple[torch.Tensor, torch.Tensor] | None = None
    for client, n in enumerate(requested):
        try:
            x, y = case.data(cfg.seed, client, n, cfg.partition)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"case {spec!r}, client {client}: make_data raised {type(exc).__name__}: {exc}"
            ) from None
        sizes.append(check_client_data(case, spec, client, x, y))
        if first is None:
            first = (x, y)
    assert first is not None
    return CaseFacts(tuple(sizes), probe_step(case, spec, *first))


def check_self_training(
    case: Case, spec: str, cfg: TrainConfig, requested: Sequence[int]
) -> CaseFacts:
    """A case with its own ``train``/``make_dataset``, or a Flower app: its sizes, and whether
    its training depends on the global RNGs, by training it here (on the CPU).

    A Flower app reports its num-examples only after training, so every client trains once
    (a client that fails is left to fail the modes, naming it); client 0 trains once more
    with other global RNG seeds. Its own ``train``: client 0 trains twice.
    """
    from gpubench.apptrainer import probe_case
    from gpubench.cases.own_train import dataset_size
    from gpubench.fl import ClientError, initial_global_state

    global_state = initial_global_state(case, cfg.seed)
    nothing = (torch.zeros(0), torch.zeros(0))
    if case.app is not None:
        if case.app.num_partitions != len(requested):
            raise ConfigError(
                f"case {spec!r}: num-partitions={case.app.num_partitions} but the run has "
                f"{len(requested)} clients"
            )
        datasets = dict.fromkeys(range(len(requested)), nothing)
        sizes, draws = probe_case(case, global_state, cfg, datasets, trains_all=True)
        return CaseFacts(tuple(sizes.get(c, n) for c, n in enumerate(requested)), bool(draws))
    counts: list[int] = []
    first: tuple[torch.Tensor, torch.Tensor] = nothing
    for client, n in enumerate(requested):
        where = f"case {spec!r}, client {client}"
        try:
            if case.make_dataset is not None:
                counts.append(dataset_size(case.dataset(cfg.seed, client, n, cfg.partition), where))
                continue
            x, y = case.data(cfg.seed, client, n, cfg.partition)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"{where}: making its data raised {type(exc).__name__}: {exc}") from None
        counts.append(check_client_data(case, spec, client, x, y))
        if client == 0:
            first = (x, y)
    try:
        _, draws = probe_case(case, global_state, cfg, {0: first}, trains_all=False)
    except ClientError as exc:
        raise ConfigError(f"case {spec!r}: {exc}") from None
    return CaseFacts(tuple(counts), bool(draws))
