"""The trainer of cases that train themselves: a case's own ``train`` or a Flower app.

Every mode builds its trainers through :func:`gpubench.train.fl.make_trainer`, so a case with
``train``/``make_dataset``/``app`` runs under every mode through :class:`OwnTrainer`, which
follows :class:`gpubench.train.fl.Trainer`: each client starts from the round's global model with
the global RNGs seeded from (seed, client) (:func:`gpubench.train.fl.seed_client_rngs`), and its
trained state, fingerprint and FedAvg weight (the examples it reports) go to the sink.

Where a client's time goes (``ClientTiming.phases``, summing to its duration):

* ``setup``: loading the global model into the worker's model and building the client's
  DataLoader (own ``train``), or turning the global model into the train message Flower's
  server sends (an ``ArrayRecord`` or NumPy ``Parameters``) and the client's Context (app);
* ``data``: waiting for the next batch of any DataLoader iterated during the client's
  training, the case's or the app's own (workers' start-up and CPU transforms included);
* ``compute``: the rest of the case's ``train`` / the app's call: forward, backward, step,
  and what gpubench cannot see apart inside it: host-to-device copies (``copy`` is not
  measured separately) and, for an app, building its model and loading its data;
* ``write``: reading the reply (arrays and num-examples), checking it, writing the state
  into the sink and fingerprinting the update; ``aggregate``: folding it into the sum.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from gpubench.cases import Case, client_sizes
from gpubench.cases.flower_app import AppError, FlowerClients, check_arrays
from gpubench.cases.own_train import sgd_train
from gpubench.cases.seeds import derive_seed
from gpubench.config import ConfigError, TrainConfig
from gpubench.machine.cuda import synchronize
from gpubench.machine.schedstat import start_waiting
from gpubench.results import ClientTiming
from gpubench.train.casecheck import CaseFacts, check_client_data
from gpubench.train.fl import (
    ClientError,
    client_rngs,
    flatten_state,
    load_state,
    seed_client_rngs,
    state_tensors,
)
from gpubench.train.updates import UpdateSink

# Phases a case's own code holds inside its ``compute`` (see the module docstring).
UNSEEN_PHASES = ("copy",)
APP_THREAD = "gpubench-client-app"


# --- time spent waiting for batches ---------------------------------------------------------

_CLOCK = threading.local()
_INSTALLED = threading.Lock()


def _install_loader_clock() -> bool:
    """Time every DataLoader's ``iter()`` and ``next()`` on the threads that ask to (once per
    process; a thread that does not ask pays one attribute look-up per batch)."""
    with _INSTALLED:
        try:
            from torch.utils.data import DataLoader
            from torch.utils.data.dataloader import _BaseDataLoaderIter
        except ImportError:  # torch without the iterator class: no data phase
            return False
        if getattr(_BaseDataLoaderIter.__next__, "_gpubench_clock", False):
            return True

        def timed(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
            def wrapper(self: Any) -> Any:
                if getattr(_CLOCK, "seconds", None) is None:
                    return fn(self)
                t = time.perf_counter()
                try:
                    return fn(self)
                finally:
                    _CLOCK.seconds += time.perf_counter() - t

            wrapper._gpubench_clock = True  # type: ignore[attr-defined]
            return wrapper

        _BaseDataLoaderIter.__next__ = timed(_BaseDataLoaderIter.__next__)  # type: ignore[method-assign,assignment]
        DataLoader.__iter__ = timed(DataLoader.__iter__)  # type: ignore[method-assign]
        return True


@contextlib.contextmanager
def loader_clock() -> Iterator[list[float]]:
    """Seconds this thread waited for DataLoader batches inside the block: ``box[0]``."""
    box = [0.0]
    if not _install_loader_clock():
        yield box
        return
    before = getattr(_CLOCK, "seconds", None)
    _CLOCK.seconds = 0.0
    try:
        yield box
    finally:
        box[0] = _CLOCK.seconds
        _CLOCK.seconds = before


def bounded(fn: Callable[[], Any], timeout_s: float | None) -> Any:
    """``fn()``, in a thread of its own when ``timeout_s`` is set: AppError if it has not
    returned by then (the thread is left behind, daemonic: Python cannot stop it)."""
    if timeout_s is None:
        return fn()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name=APP_THREAD, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise AppError(f"did not return within {timeout_s:g} s (client-timeout)")
    if "error" in box:
        raise box["error"]
    return box["value"]


# --- the trainer ------------------------------------------------------------------------------


def allocations(devices: int | None = None) -> list[int]:
    """How many blocks torch's CUDA allocator has handed out so far, per visible GPU (a
    counter that only grows; reading it creates no context)."""
    n = torch.cuda.device_count() if devices is None else devices
    return [int(torch.cuda.memory_stats(i).get("allocation.all.allocated", 0)) for i in range(n)]


@contextlib.contextmanager
def bound_to(torch_device: str) -> Iterator[None]:
    """Run a case's own training with ``torch_device`` as the current CUDA device, as a worker
    bound to its GPU has it: an app that asks for ``torch.device("cuda")`` or
    ``torch.cuda.current_device()`` gets the mode's GPU. An app that names another GPU itself
    (``"cuda:0"`` while the mode runs on ``cuda:1``) raises :class:`AppError` naming it, since
    the synchronising, memory and monitor would all describe a GPU it did not use."""
    if not torch_device.startswith("cuda:"):
        yield
        return
    index = int(torch_device.split(":")[1])
    before = allocations()
    with torch.cuda.device(index):
        yield
    after = allocations(len(before))
    elsewhere = [f"cuda:{i}" for i, (b, a) in enumerate(zip(before, after, strict=True))
                 if a > b and i != index]
    if elsewhere:
        raise AppError(
            f"trained on {', '.join(elsewhere)} while this mode runs on {torch_device}: let "
            "the app take the device it is given (torch.device('cuda'), which gpubench "
            "binds to the mode's GPU), not a fixed 'cuda:0'"
        )


def requested_size(cfg: TrainConfig, client: int) -> int:
    """The samples ``client`` is asked for (``--samples-per-client``)."""
    return client_sizes(cfg.samples, cfg.seed, client + 1)[client]


class OwnTrainer:
    """Trains the clients of a case that trains itself; see the module docstring."""

    unseen_phases = UNSEEN_PHASES

    def __init__(
        self,
        case: Case,
        cfg: TrainConfig,
        torch_device: str,
        device_id: str,
        worker: int,
        datasets: Mapping[int, tuple[torch.Tensor, torch.Tensor]],
    ) -> None:
        self.case = case
        self.cfg = cfg
        self.torch_device = torch_device
        self.device_id = device_id
        self.worker = worker
        self.synchronize: Callable[[], None] = lambda: synchronize(torch_device)
        self.rng_seed = cfg.seed  # the probe trains once more with other global RNGs
        with torch.random.fork_rng(devices=[]):
            reference = case.build_model()
        state = reference.state_dict()
        self.names = list(state.keys())
        self.shapes = [tuple(t.shape) for t in state.values()]
        self.dtypes = [t.dtype for t in state.values()]
        self.sink = UpdateSink(sum(t.numel() for t in state.values()), cfg.seed, torch_device)
        self._trained: torch.Tensor | None = None
        self.app: FlowerClients | None = case.app
        self.model: torch.nn.Module | None = None
        self.data: dict[int, Any] = {}
        if self.app is None:
            self.model = reference.to(torch_device)
            self.tensors = state_tensors(self.model)
            self.train_fn = case.train or sgd_train(case.loss_fn())
            for c, pair in datasets.items():
                self.data[c] = (
                    case.dataset(cfg.seed, c, requested_size(cfg, c), cfg.partition)
                    if case.make_dataset is not None else pair
                )

    # What the client is handed -------------------------------------------------------------

    def _global_arrays(self) -> list[np.ndarray]:
        flat = self.sink.global_state.detach().to("cpu", torch.float32)
        parts = torch.split(flat, [int(np.prod(s, dtype=np.int64)) for s in self.shapes])
        out = []
        for p, shape, dtype in zip(parts, self.shapes, self.dtypes, strict=True):
            t = p.reshape(shape)
            if not dtype.is_floating_point and dtype != torch.bool:
                t = t.round()
            out.append(t.to(dtype).numpy().copy())
        return out

    def _loader(self, client: int) -> Any:
        data = self.data[client]
        if self.case.make_dataset is None:
            return data
        from torch.utils.data import DataLoader

        gen = torch.Generator().manual_seed(derive_seed(self.cfg.seed, "shuffle", client, 0))
        return DataLoader(data, batch_size=self.cfg.batch_size, shuffle=True, generator=gen)

    # One client ---------------------------------------------------------------------------

    def _train(self, client: int, given: Any) -> tuple[list[np.ndarray] | None, int, float]:
        def call() -> tuple[list[np.ndarray] | None, int, float]:
            with loader_clock() as waited, bound_to(self.torch_device):
                if self.app is not None:
                    arrays, n = self.app.call(given)
                else:
                    assert self.model is not None
                    arrays, n = None, self._examples(client, self.train_fn(
                        self.model, given, self.cfg, self.torch_device))
            return arrays, n, waited[0]

        return bounded(call, self.app.timeout_s if self.app is not None else None)  # type: ignore[no-any-return]

    def _examples(self, client: int, n: Any) -> int:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) <= 0:
            raise AppError(f"returned {n!r}, not the number of examples it trained on (> 0)")
        data = self.data[client]
        have = len(data) if self.case.make_dataset is not None else int(data[0].shape[0])
        if int(n) != have:
            raise AppError(
                f"returned {int(n)} examples but the client has {have}: return the "
                "examples it trained on, len(loader.dataset) (FedAvg's weight)"
            )
        return int(n)

    def _write(self, arrays: list[np.ndarray] | None) -> None:
        view = self.sink.state_view()
        if arrays is None:
            flatten_state(self.tensors, view)
            self._trained = None
            return
        check_arrays(arrays, self.shapes)
        flat = torch.from_numpy(
            np.concatenate([np.asarray(a, dtype=np.float32).reshape(-1) for a in arrays])
            if arrays else np.zeros(0, np.float32)
        )
        if not torch.isfinite(flat).all():
            raise AppError("returned arrays holding NaN or infinite values")
        view.copy_(flat)
        self._trained = flat

    def trained(self) -> torch.Tensor:
        """The last client's trained state, flat float32 on the host."""
        if self._trained is not None:
            return self._trained
        return flatten_state(self.tensors)

    def _failed(self, client: int, exc: BaseException) -> ClientError:
        what = str(exc) if isinstance(exc, AppError) else f"raised {type(exc).__name__}: {exc}"
        kind = "the app" if self.app is not None else "train"
        return ClientError(f"client {client} on {self.device_id}: {kind} {what}")

    def run(self, client: int, fingerprints: torch.Tensor, fold: bool = True) -> ClientTiming:
        self.synchronize()
        t0 = time.perf_counter()
        waited = start_waiting()
        try:
            with client_rngs(self.torch_device):
                seed_client_rngs(self.rng_seed, client, 0)
                if self.app is not None:
                    given = self.app.prepare(client, self.names, self._global_arrays())
                else:
                    assert self.model is not None
                    load_state(self.tensors, self.sink.global_state)
                    given = self._loader(client)
                self.synchronize()
                t1 = time.perf_counter()
                arrays, samples, data_s = self._train(client, given)
            self.synchronize()
            t2 = time.perf_counter()
            self._write(arrays)
        except ClientError:
            raise
        except Exception as exc:
            raise self._failed(client, exc) from exc
        fingerprints[client] = self.sink.take()
        self.synchronize()
        t3 = time.perf_counter()
        if fold:
            self.sink.fold(float(samples))
        self.synchronize()
        t4 = time.perf_counter()
        data_s = min(data_s, t2 - t1)
        phases = {"setup": t1 - t0, "data": data_s, "compute": t2 - t1 - data_s,
                  "write": t3 - t2, "aggregate": t4 - t3}
        return ClientTiming(
            client=client, device=self.device_id, worker=self.worker, samples=samples,
            load_s=t1 - t0, train_s=t2 - t1, write_s=t4 - t2, start_s=t0, end_s=t4,
            phases=phases, wait_s=waited(),
        )


# --- what prepare learns from such a case -----------------------------------------------------


def update_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative difference of two fingerprints of one client's update."""
    scale = float(torch.linalg.vector_norm(a)) or 1.0
    return float(torch.linalg.vector_norm(a - b)) / scale


def probe_case(
    case: Case,
    global_state: torch.Tensor,
    cfg: TrainConfig,
    datasets: Mapping[int, tuple[torch.Tensor, torch.Tensor]],
    trains_all: bool,
) -> tuple[dict[int, int], bool | None]:
    """Train the clients of ``datasets`` once each on this process (``trains_all``; to learn
    the num-examples each reports; else the first alone), then the first once more with
    other global RNG seeds: (examples per client that trained, whether the first client's
    update depends on the global RNGs; None when it failed). With ``trains_all`` a client
    whose training fails is left out (the modes then fail naming it and what went wrong);
    without, its ClientError propagates."""
    clients = sorted(datasets)
    with cuda_hidden():
        return _probe(case, global_state, cfg, datasets, trains_all, clients)


@contextlib.contextmanager
def cuda_hidden() -> Iterator[None]:
    """Inside the block ``torch.cuda.is_available()`` says False, so an app that picks its own
    device (``"cuda:0" if torch.cuda.is_available() else "cpu"``, as Flower's template does)
    trains on the CPU, as the check before a run means to, not on the parent's GPU 0."""
    real = torch.cuda.is_available
    torch.cuda.is_available = lambda: False  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.cuda.is_available = real  # type: ignore[assignment]


def _probe(
    case: Case,
    global_state: torch.Tensor,
    cfg: TrainConfig,
    datasets: Mapping[int, tuple[torch.Tensor, torch.Tensor]],
    trains_all: bool,
    clients: list[int],
) -> tuple[dict[int, int], bool | None]:
    from gpubench.train.updates import FINGERPRINT_SIZE

    trainer = OwnTrainer(case, cfg, "cpu", "the parent", 0, datasets)
    fps = torch.full((clients[-1] + 1, FINGERPRINT_SIZE), float("nan"), dtype=torch.float64)
    sizes: dict[int, int] = {}
    trainer.sink.begin(global_state)
    first = clients[0]
    for c in clients if trains_all else [first]:
        try:
            sizes[c] = trainer.run(c, fps, fold=False).samples
        except ClientError:
            if not trains_all:
                raise
    if first not in sizes:
        return sizes, None
    before = fps[first].clone()
    trainer.rng_seed = derive_seed(cfg.seed, "probe")
    try:
        trainer.run(first, fps, fold=False)
    except ClientError:
        if not trains_all:
            raise
        return sizes, None
    return sizes, update_difference(before, fps[first]) > 1e-3


def check_self_training(
    case: Case, spec: str, cfg: TrainConfig, requested: Sequence[int]
) -> CaseFacts:
    """A case with its own ``train``/``make_dataset``, or a Flower app: its sizes, and whether
    its training depends on the global RNGs, by training it here (on the CPU).

    A Flower app reports its num-examples only after training, so every client trains once
    (a client that fails is left to fail the modes, naming it); client 0 trains once more
    with other global RNG seeds. Its own ``train``: client 0 trains twice.
    """
    from gpubench.cases.own_train import dataset_size
    from gpubench.train.fl import ClientError, initial_global_state

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
