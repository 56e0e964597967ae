"""Client data on demand: a client's ``(x, y)`` is made when it first trains, and kept only
within a memory budget.

A worker (or an in-process mode) holds one :class:`ClientData`, a mapping from client to its
data on the worker's device. Looking a client up makes its data (``Case.data``), checks it as
the parent checked its sample (one line naming the client on bad data) and, while the kept
data stays within the budget, keeps it; a client beyond the budget is made again each time it
trains (the trainer times that as the client's ``data`` phase). The first clients to fit are
kept and none is evicted: every round visits the clients in the same order, so evicting the
oldest would make every client again every round, while keeping the first ones makes only
those beyond the budget again.

The budget is per store (``TrainConfig.data_budget``, bytes; None: keep every client's data,
the plan having checked that it fits). On a GPU the data kept is also held to
``GPU_DATA_SHARE`` of the device's memory, shared by the processes on that device.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, MutableMapping, Sequence

import torch

from gpubench.cases import Case
from gpubench.config import ConfigError, TrainConfig
from gpubench.machine.cuda import free_memory
from gpubench.train.casecheck import check_client_data

Data = tuple[torch.Tensor, torch.Tensor]

# The share of a GPU's memory the client data kept by its processes may take.
GPU_DATA_SHARE = 0.5
SLAB_BYTES = 64 << 20  # above glibc's largest mmap threshold (32 MiB)
SLAB_ALIGN = 64


def data_bytes(x: torch.Tensor, y: torch.Tensor) -> int:
    return int(x.numel() * x.element_size() + y.numel() * y.element_size())


def device_cap(torch_device: str, peers: int = 1) -> int | None:
    """Bytes of client data one of ``peers`` processes may keep on a GPU (None on the CPU):
    a share of what is free there when its data is made (other users' jobs take the rest)."""
    free = free_memory(torch_device)
    if free is None:
        return None
    return int(GPU_DATA_SHARE * free / max(1, peers))


class Slabs:
    """Kept host tensors, copied one after another into large blocks of their own.

    A client's data is made among temporaries (its generation, the training step before
    it) in the heap; kept there, each client would pin the heap around it and the process
    would grow by more than the data (measured: cnn, 1000 clients of 32 samples, 0.44 MB of
    resident memory per 0.375 MB client). A slab is one allocation above glibc's mmap
    threshold: its own mapping, resident only where written.
    """

    def __init__(self, size: int = SLAB_BYTES) -> None:
        self.size = size
        self.current: torch.Tensor | None = None
        self.used = 0

    def place(self, t: torch.Tensor) -> torch.Tensor:
        """A copy of ``t`` in a slab (``t`` itself if it is large enough to be its own)."""
        n = t.numel() * t.element_size()
        if n == 0 or n > self.size // 4 or not t.is_contiguous():
            return t
        if self.current is None or self.used + n > self.size:
            self.current = torch.empty(self.size, dtype=torch.uint8)
            self.used = 0
        view = self.current[self.used : self.used + n].view(t.dtype).view(t.shape)
        view.copy_(t)
        self.used += -(-n // SLAB_ALIGN) * SLAB_ALIGN
        return view


class ClientData(MutableMapping[int, Data]):
    """The data of ``clients`` on ``torch_device``, made on demand, kept within ``budget``.

    ``sizes[c]``: the samples client c has (what the parent found, or asked for); data made
    with another count is bad input (the FedAvg weights would be wrong). Safe to use from
    several threads (the threaded mode's replicas share one store).
    """

    def __init__(
        self,
        case: Case,
        cfg: TrainConfig,
        clients: Sequence[int],
        sizes: Sequence[int],
        torch_device: str,
        budget: int | None = None,
        spec: str | None = None,
        peers: int = 1,
    ) -> None:
        self.case = case
        self.cfg = cfg
        self.clients = tuple(clients)
        self.allowed = frozenset(self.clients)
        self.sizes = sizes
        self.torch_device = torch_device
        self.spec = spec or case.name
        cap = device_cap(torch_device, peers)
        self.budget = budget if cap is None else cap if budget is None else min(budget, cap)
        self.kept: dict[int, Data] = {}
        # Host data kept: packed into slabs of its own (see Slabs). Not for a DataLoader's
        # worker processes: handing them a client's tensors would share its whole slab.
        p = cfg.pipeline
        loader_processes = p.loader == "dataloader" and p.loader_workers > 0
        on_host = torch.device(torch_device).type == "cpu"
        self.slabs = Slabs() if on_host and not loader_processes else None
        self.kept_bytes = 0
        self.made = 0  # how many times data was made (kept or not)
        self.lock = threading.Lock()

    def __getitem__(self, client: int) -> Data:
        with self.lock:
            data = self.kept.get(client)
        if data is not None:
            return data
        if client not in self.allowed:
            raise KeyError(client)
        data = self.make(client)
        size = data_bytes(*data)
        with self.lock:
            self.made += 1
            if client not in self.kept and (
                self.budget is None or self.kept_bytes + size <= self.budget
            ):
                if self.slabs is not None:
                    data = (self.slabs.place(data[0]), self.slabs.place(data[1]))
                self.kept[client] = data
                self.kept_bytes += size
        return data

    def make(self, client: int) -> Data:
        """Client ``client``'s data on the device, checked; one line naming it when bad."""
        try:
            x, y = self.case.data(self.cfg.seed, client, self.sizes[client], self.cfg.partition)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"case {self.spec!r}, client {client}: make_data raised "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if self.case.trains_itself:  # its own train (or a Flower app) reads its own data
            return x, y
        n = check_client_data(self.case, self.spec, client, x, y)
        if n != self.sizes[client]:
            raise ConfigError(
                f"case {self.spec!r}, client {client}: make_data returned {n} samples, "
                f"{self.sizes[client]} before the run (it must return the same data each time)"
            )
        return x.to(self.torch_device), y.to(self.torch_device)

    def keeps(self, client: int) -> bool:
        """Whether ``client``'s data is kept (what is built on it may be kept with it)."""
        with self.lock:
            return client in self.kept

    def reserve(self, nbytes: int) -> bool:
        """Count ``nbytes`` of data the caller keeps itself (e.g. clients stacked into one
        tensor) against the budget, if they fit; whether they did."""
        with self.lock:
            if self.budget is not None and self.kept_bytes + nbytes > self.budget:
                return False
            self.kept_bytes += nbytes
            return True

    def __setitem__(self, client: int, data: Data) -> None:
        """Pin ``data`` as the client's (kept whatever the budget)."""
        with self.lock:
            old = self.kept.pop(client, None)
            if old is not None:
                self.kept_bytes -= data_bytes(*old)
            self.kept[client] = data
            self.kept_bytes += data_bytes(*data)

    def __delitem__(self, client: int) -> None:
        with self.lock:
            old = self.kept.pop(client)
            self.kept_bytes -= data_bytes(*old)

    def __iter__(self) -> Iterator[int]:
        return iter(self.clients)

    def __len__(self) -> int:
        return len(self.clients)

    def __contains__(self, client: object) -> bool:
        return client in self.allowed
