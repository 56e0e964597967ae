"""A client's input pipeline, and the clock that splits its time into phases.

What a real federated client does between two optimizer steps, each part an option of
:class:`gpubench.config.PipelineConfig`: where its data lives (on the device, or on the host
and copied per batch), how batches are made (indexing two tensors, or a
``torch.utils.data.DataLoader`` over a per-sample ``Dataset``, with worker processes), CPU
transforms per sample (random crop with padding 4, horizontal flip, normalise, through
``torchvision.transforms.v2``), and CIFAR-10 from the user's own folder (decoded to PIL and
converted per sample, as torchvision's examples do).

Every random draw of the pipeline comes from the client's own generators, seeded by (seed,
client, epoch): the shuffle order and each sample's crop offsets and flip are drawn by the
sampler in the training thread and travel with the sample's index to whichever loader
worker makes it. So every mode, every loader and every number of loader workers computes the
same batches, and threads never share an RNG.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gpubench.cases.seeds import derive_seed
from gpubench.config import ConfigError, PipelineConfig, TrainConfig, cifar_folder
from gpubench.results import PHASES

PAD = 4  # pixels of zero padding before the random crop, as CIFAR examples use
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
# A loader worker that sends nothing for this long fails the client (never a hang).
LOADER_TIMEOUT_S = 300.0
LOADER_HINT = (
    "DataLoader workers forked from a process running several threads may die or hang; "
    "start them with --loader-start forkserver (the default) or spawn, or use --loader-workers 0"
)

Batch = tuple[torch.Tensor, torch.Tensor]
# The phases whose time is the device's (split by CUDA events where there are some).
DEVICE_PHASES = ("copy", "compute")


class PhaseClock:
    """Charges the time since the previous tick to one phase: a client's phases then add up
    to exactly the span from the first timestamp to the last.

    ``sync`` waits for the device's queued work (CUDA); a tick with ``synced`` calls it first,
    so the device's time lands in the phase that queued it. A step's ticks are not synced (a
    device-wide wait per step is a barrier user code does not have, and the host could no
    longer run ahead): with ``events`` (a recorder of CUDA events on the current stream) every
    tick records an event, and the next synced tick, once the device is done, reads them and
    splits the copy and compute time it charged since the last synced tick in
    proportion to the device's own time in each. Without events that time stays where the
    host saw it (on CUDA, the waiting for queued kernels lands in the synced tick's phase).
    """

    __slots__ = ("_events", "_host", "_last", "_marks", "_sync", "phases", "start")

    def __init__(self, sync: Callable[[], None], events: Callable[[], Any] | None = None) -> None:
        self._sync = sync
        self._events = events
        self._marks: list[tuple[str, Any]] = [("", events())] if events is not None else []
        self._host = dict.fromkeys(DEVICE_PHASES, 0.0)
        self.phases = dict.fromkeys(PHASES, 0.0)
        self.start = self._last = time.perf_counter()

    def tick(self, phase: str, synced: bool = False) -> float:
        if self._events is not None:
            self._marks.append((phase, self._events()))
        if synced:
            self._sync()
        now = time.perf_counter()
        self.phases[phase] += now - self._last
        if phase in self._host:
            self._host[phase] += now - self._last
        self._last = now
        if synced and self._events is not None:
            self._split()
        return now

    def _split(self) -> None:
        """The copy and compute time since the last synced tick, split as the device spent it
        (the events are complete: the device was just synchronised)."""
        device = dict.fromkeys(DEVICE_PHASES, 0.0)
        for (_, before), (phase, after) in itertools.pairwise(self._marks):
            if phase in device:
                device[phase] += max(0.0, float(before.elapsed_time(after)))
        spent = sum(device.values())
        charged = sum(self._host.values())
        if spent > 0:
            for phase, t in device.items():
                self.phases[phase] += charged * t / spent - self._host[phase]
        self._host = dict.fromkeys(DEVICE_PHASES, 0.0)
        self._marks = self._marks[-1:]  # the next span starts at this tick's event


class NullClock(PhaseClock):
    """A clock that measures nothing (accuracy runs, and the benchmark's reference)."""

    def __init__(self) -> None:
        super().__init__(lambda: None)

    def tick(self, phase: str, synced: bool = False) -> float:
        return 0.0


def set_torch_threads(threads: int | None) -> None:
    """``--torch-threads N``: torch's intra-op threads of this process (every thread's ops)."""
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def check_pipeline(pipeline: PipelineConfig, input_shape: tuple[int, ...], cuda: bool) -> None:
    """What the devices and the case must offer the pipeline, as bad input (exit 2)."""
    if pipeline.amp == "fp16" and not cuda:
        raise ConfigError("--amp fp16 is not applicable on CPU slots (float16 autocast and "
                          "GradScaler are for CUDA); use --amp bf16 there")
    if pipeline.dataset and tuple(input_shape) != (3, 32, 32):
        shape = "x".join(str(d) for d in input_shape)
        raise ConfigError(f"--dataset {pipeline.dataset}: CIFAR-10 images are 3x32x32, the "
                          f"case's model takes {shape} (use --case cnn or resnet18)")
    if pipeline.augment == "crop-flip" and len(input_shape) != 3:
        raise ConfigError("--augment crop-flip needs image samples (channels x height x width)")


# --- mixed precision ------------------------------------------------------------------------


def autocast(amp: str, torch_device: str) -> AbstractContextManager[Any]:
    if amp == "off":
        return nullcontext()
    kind = torch.device(torch_device).type
    return torch.autocast(kind, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def grad_scaler(amp: str, torch_device: str) -> torch.amp.GradScaler | None:
    """fp16 needs its loss scaled (a fresh scaler per client: each starts from scratch)."""
    return torch.amp.GradScaler(torch.device(torch_device).type) if amp == "fp16" else None


# --- augmentation ---------------------------------------------------------------------------


def augment_draws(n: int, seed: int, client: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's crop offsets (n x 2, in 0..2*PAD) and flip (n,) for one epoch."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "augment", client, epoch))
    offsets = torch.randint(0, 2 * PAD + 1, (n, 2), generator=gen)
    flips = torch.randint(0, 2, (n,), generator=gen).bool()
    return offsets, flips


def crop_flip_one(img: torch.Tensor, top: int, left: int, flip: bool) -> torch.Tensor:
    """One sample (C x H x W): zero padding, the crop at (top, left), maybe a flip."""
    from torchvision.transforms.v2 import functional as F

    h, w = img.shape[-2:]
    out = F.crop(F.pad(img, [PAD, PAD, PAD, PAD]), top, left, h, w)
    return F.horizontal_flip(out) if flip else out


def crop_flip_batch(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """The same transform for a whole batch (N x C x H x W) at once, on x's device."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, [PAD, PAD, PAD, PAD])
    offsets, flips = offsets.to(x.device), flips.to(x.device)
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device).expand(n, w)
    cols = torch.where(flips[:, None], cols.flip(1), cols) + offsets[:, 1:2]
    batch = torch.arange(n, device=x.device)[:, None, None]
    # (n, h, w, C) from advanced indexing around the channel slice, back to (n, C, h, w)
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    return F.normalize(x, list(mean), list(std))


# --- CIFAR-10 from the user's folder --------------------------------------------------------


@functools.lru_cache(maxsize=2)
def load_cifar(path: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's training images (N x 32 x 32 x 3, uint8) and labels, through torchvision's
    ``CIFAR10`` (``download=False``), once per process. Only the files' presence is checked,
    not their checksums: a folder of a few images in CIFAR's format is a CIFAR folder too."""
    from torchvision.datasets import CIFAR10

    class Folder(CIFAR10):
        def _check_integrity(self) -> bool:
            base = os.path.join(self.root, self.base_folder)
            return all(os.path.isfile(os.path.join(base, f)) for f, _ in self.train_list)

        def _load_meta(self) -> None:
            self.classes = [str(i) for i in range(10)]

    data = Folder(cifar_folder(path), train=True, download=False)
    return np.ascontiguousarray(data.data), np.asarray(data.targets, dtype=np.int64)


def cifar_pick(labels: np.ndarray, want: torch.Tensor, seed: int, client: int) -> np.ndarray:
    """The images of a client: for each of its labels (the labels its synthetic data would
    have, so ``--partition`` skews them the same way) an image of that class, drawn without
    replacement from the client's own generator (again once a class runs out)."""
    rng = np.random.default_rng(derive_seed(seed, "cifar", client))
    wanted = want.cpu().numpy().astype(np.int64)
    picked = np.empty(len(wanted), dtype=np.int64)
    for label in np.unique(wanted):
        pool = np.flatnonzero(labels == label)
        if pool.size == 0:
            raise ConfigError(f"the CIFAR-10 folder has no image of class {int(label)}")
        slots = np.flatnonzero(wanted == label)
        rounds = -(-slots.size // pool.size)
        order = np.concatenate([rng.permutation(pool) for _ in range(rounds)])
        picked[slots] = order[: slots.size]
    return picked


# --- per-sample datasets and the sampler that draws for them --------------------------------


class Samples(Dataset):  # type: ignore[type-arg]
    """A client's samples one at a time; a key is an index, or (index, top, left, flip)."""

    def __init__(self, y: torch.Tensor, mean: tuple[float, ...] | None,
                 std: tuple[float, ...] | None) -> None:
        self.y = y
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def image(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def __getitem__(self, key: Any) -> Batch:
        if isinstance(key, tuple):
            index, top, left, flip = key
            img = crop_flip_one(self.image(index), top, left, flip)
        else:
            index, img = key, self.image(key)
        if self.mean is not None and self.std is not None:
            img = normalise(img, self.mean, self.std)
        return img, self.y[index]


class TensorSamples(Samples):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None) -> None:
        super().__init__(y, mean, std)
        self.x = x

    def image(self, index: int) -> torch.Tensor:
        return self.x[index]


class CifarSamples(Samples):
    """CIFAR images as a torchvision example reads them: uint8 HWC -> PIL -> float tensor."""

    def __init__(self, images: np.ndarray, y: torch.Tensor) -> None:
        super().__init__(y, CIFAR_MEAN, CIFAR_STD)
        self.images = images

    def image(self, index: int) -> torch.Tensor:
        from PIL import Image
        from torchvision.transforms.v2 import functional as F

        return F.to_dtype(F.to_image(Image.fromarray(self.images[index])), torch.float32,
                          scale=True)


class EpochSampler(Sampler):  # type: ignore[type-arg]
    """The client's shuffle order (and augmentation draws) for the epoch set last."""

    def __init__(self, n: int, seed: int, client: int, augment: bool) -> None:
        self.n, self.seed, self.client, self.augment = n, seed, client, augment
        self.epoch = 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Any]:
        order = shuffle_order(self.n, self.seed, self.client, self.epoch).tolist()
        if not self.augment:
            return iter(order)
        offsets, flips = augment_draws(self.n, self.seed, self.client, self.epoch)
        off, fl = offsets.tolist(), flips.tolist()
        return iter([(i, off[i][0], off[i][1], fl[i]) for i in order])


def shuffle_order(n: int, seed: int, client: int, epoch: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(derive_seed(seed, "shuffle", client, epoch))
    return torch.randperm(n, generator=gen)


def seed_loader_worker(worker_id: int) -> None:
    """A loader worker's RNGs from its torch seed (the loader's generator + worker id)."""
    s = torch.initial_seed() % (1 << 32)
    random.seed(s)
    np.random.seed(s)


# --- where a client's batches come from -----------------------------------------------------


class ClientSource:
    """One client's batches, epoch by epoch, as the pipeline makes them (not yet on the device
    when the data lives on the host)."""

    def __init__(self, cfg: TrainConfig, client: int, x: torch.Tensor, y: torch.Tensor,
                 torch_device: str, cifar: np.ndarray | None = None) -> None:
        p = cfg.pipeline
        self.cfg, self.client, self.p = cfg, client, p
        self.cuda = torch.device(torch_device).type == "cuda"
        self.mean: tuple[float, ...] | None = None
        self.std: tuple[float, ...] | None = None
        if cifar is not None or p.augment == "crop-flip":
            channels = int(x.shape[1])
            self.mean, self.std = (CIFAR_MEAN, CIFAR_STD) if cifar is not None else (
                (0.0,) * channels, (1.0,) * channels)
        self.n = int(x.shape[0])
        self.y = y
        self.loader: DataLoader | None = None  # type: ignore[type-arg]
        if p.loader == "dataloader":
            ys = y.cpu()
            data: Samples = (CifarSamples(cifar, ys) if cifar is not None
                             else TensorSamples(x.cpu(), ys, self.mean, self.std))
            self.sampler = EpochSampler(self.n, cfg.seed, client, p.augment == "crop-flip")
            self.loader = make_loader(data, self.sampler, cfg, client, self.cuda)
            return
        if cifar is not None:  # decoded once, as a tensor pipeline keeps its data
            from torchvision.transforms.v2 import functional as F

            imgs = torch.from_numpy(cifar).permute(0, 3, 1, 2)
            x = F.to_dtype(imgs, torch.float32, scale=True).to(x.device if p.data == "device"
                                                               else "cpu")
            if p.augment == "none":
                x, self.mean, self.std = normalise(x, CIFAR_MEAN, CIFAR_STD), None, None
        self.x = x

    def epoch(self, epoch: int) -> Iterator[Batch]:
        if self.loader is not None:
            self.sampler.epoch = epoch
            return iter(self.loader)
        return self._tensor_batches(epoch)

    def _tensor_batches(self, epoch: int) -> Iterator[Batch]:
        x, y, bs = self.x, self.y, self.cfg.batch_size
        order = shuffle_order(self.n, self.cfg.seed, self.client, epoch).to(x.device)
        draws = (augment_draws(self.n, self.cfg.seed, self.client, epoch)
                 if self.p.augment == "crop-flip" else None)
        pin = self.p.pin_memory and self.cuda
        for start in range(0, self.n, bs):
            idx = order[start : start + bs]
            xb, yb = x[idx], y[idx]
            if draws is not None:
                cpu_idx = idx.cpu()
                xb = crop_flip_batch(xb, draws[0][cpu_idx], draws[1][cpu_idx])
            if self.mean is not None and self.std is not None:
                xb = normalise(xb, self.mean, self.std)
            if pin:
                xb, yb = xb.pin_memory(), yb.pin_memory()
            yield xb, yb

    def close(self) -> None:
        """Stop the loader's workers now (persistent ones would outlive the client)."""
        it = getattr(self.loader, "_iterator", None) if self.loader is not None else None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        if self.loader is not None:
            self.loader._iterator = None


def make_loader(data: Samples, sampler: EpochSampler, cfg: TrainConfig, client: int,
                cuda: bool) -> DataLoader:  # type: ignore[type-arg]
    p = cfg.pipeline
    workers = p.loader_workers
    extra: dict[str, Any] = {}
    if workers:
        extra = {"multiprocessing_context": loader_context(p.loader_start),
                 "worker_init_fn": seed_loader_worker, "persistent_workers": p.persistent_workers,
                 "timeout": LOADER_TIMEOUT_S}
    return DataLoader(
        data, batch_size=cfg.batch_size, sampler=sampler, num_workers=workers,
        pin_memory=p.pin_memory and cuda,
        # The loader's own draws (its workers' base seed) from the client's generator, never
        # from torch's global RNG, which threads share.
        generator=torch.Generator().manual_seed(derive_seed(cfg.seed, "loader", client)),
        **extra,
    )


def loader_context(start: str) -> Any:
    """The multiprocessing context a loader starts its workers with.

    forkserver: the server (preloaded with torch and this module, so that a worker starts in
    a fork's time) is a fresh single-threaded process, so forking it is safe whatever threads
    this process runs. In a process that is itself a daemonic worker (gpubench's pools), the
    daemon flag is lifted so that it may start the loader's workers: they are daemonic
    themselves and watch this process, so they still end with it.
    """
    import multiprocessing

    proc = multiprocessing.current_process()
    if proc.daemon and proc.name != "MainProcess":
        proc.daemon = False
    ctx = multiprocessing.get_context(start)
    if start == "forkserver":
        ctx.set_forkserver_preload(["torch", "torchvision.transforms.v2", "gpubench.train.pipeline"])
    return ctx


def start_loader_server(p: PipelineConfig) -> None:
    """Start the forkserver the loader's workers fork from, if they do (see
    :func:`warm_up_process <gpubench.train.fl.warm_up_process>`)."""
    if not p.loader_workers or p.loader_start != "forkserver" or _loader_server_pid():
        return  # (a process's later trainers find it running)
    # A no-op forked from the server returns once the server has loaded its modules.
    process = loader_context("forkserver").Process(target=_nothing, daemon=True)
    process.start()
    process.join()


def _nothing() -> None:
    """What :func:`start_loader_server` forks: nothing."""


def _loader_server_pid() -> int | None:
    """The pid of this process's forkserver, if it started one."""
    import multiprocessing.forkserver

    return getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)


def stop_loader_server() -> None:
    """End this process's loader forkserver, if it started one, before the process ends.

    Left alone it notices its parent's end only through its pipe, and then spends a second
    tearing down its own torch: an orphan for that long. The loader's workers are stopped
    before this (a persistent one is a child of the server)."""
    import multiprocessing.forkserver

    pid = _loader_server_pid()
    if pid is None:
        return
    server: Any = multiprocessing.forkserver._forkserver
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)  # it holds nothing but the preloaded modules
    with contextlib.suppress(OSError):
        server._stop()  # closes its pipe and reaps it


def loader_hint(exc: BaseException) -> str:
    """The hint for a loader worker that died or hung ("" for any other failure)."""
    text = str(exc)
    if "DataLoader worker" in text or "DataLoader timed out" in text:
        return f" ({LOADER_HINT})"
    return ""
