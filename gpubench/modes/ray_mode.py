"""``ray``: clients on a pool of persistent Ray actors, on this machine or on a Ray cluster.

One actor per device by default (``--workers-per-device`` for more), each reserving
``--cpus-per-worker`` CPUs and ``--gpus-per-worker`` GPUs (a fraction, like Flower's
``num_gpus``: it caps how many actors share a GPU, not their memory). Defaults: a CPU slot's
cores and no GPU; on CUDA one CPU and ``1 / workers-per-device`` GPU. An actor on a CPU slot
pins itself to the slot's cores with as many torch threads, as a ``multi-gpu`` worker does; an
actor with a GPU uses the one Ray gave it (Ray sets its ``CUDA_VISIBLE_DEVICES``).

Each actor builds its model and its clients' data once. Every round the global model goes
into the object store once (``ray.put``); each actor trains its clients from it and returns
their flat states, which fill the (clients x state) matrix in client order, so the harness's
FedAvg and equivalence check are the same as for every other mode.

``--ray-address`` (``auto``, ``host:port``, ``ray://host:port``) connects to an existing
cluster; gpubench then only disconnects at the end. Without it gpubench starts a local Ray
(no dashboard, nothing logged to the terminal) and shuts it down in ``close()``, then makes
sure no Ray process of its own is left. Ray itself replaces a loopback ``_node_ip_address``
with the machine's address, so a local Ray listens where Ray decides.

Ray is imported lazily: without it the mode fails with an install hint and the other modes
run as usual.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gpubench.devices import Device
from gpubench.modes.base import ModeFailure, Plan, RoundOutput
from gpubench.modes.pool import WorkerSetup, WorkerSpec
from gpubench.modes.processes import WorkerSpecs, plan_workers
from gpubench.results import ClientTiming, WorkerMemory

RAY_MISSING = "ray is not installed: pip install 'gpubench[ray]'"


def import_ray() -> Any:
    """The ``ray`` module, or a ModeFailure with the install hint."""
    try:
        import ray
    except ImportError:
        raise ModeFailure(RAY_MISSING) from None
    return ray


# --- resources ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resources:
    """What one actor (or one Flower client) reserves from Ray."""

    cpus: float
    gpus: float


def _option(options: Mapping[str, Any], name: str, flag: str) -> float | None:
    value = options.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ModeFailure(f"{flag} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ModeFailure(f"{flag} must be >= 0, got {value!r}")
    return number


def worker_resources(plan: Plan, device: Device) -> Resources:
    """Reservations of one worker on ``device`` from --cpus-per-worker / --gpus-per-worker."""
    options = plan.config.options
    cpus = _option(options, "cpus_per_worker", "--cpus-per-worker")
    gpus = _option(options, "gpus_per_worker", "--gpus-per-worker")
    if cpus is None:
        cpus = float(len(device.cores) or 1) if not device.is_cuda else 1.0
    if gpus is None:
        gpus = 1.0 / plan.config.workers_per_device if device.is_cuda else 0.0
    if gpus > 1 and gpus != int(gpus):
        raise ModeFailure(f"--gpus-per-worker above 1 must be a whole number, got {gpus:g}")
    if device.is_cuda and gpus == 0:
        raise ModeFailure("--gpus-per-worker 0 on CUDA devices would leave the workers no GPU")
    return Resources(cpus, gpus)


def ray_address(plan: Plan) -> str | None:
    value = plan.config.options.get("ray_address")
    return str(value) if value else None


def local_cluster_size(plan: Plan, needed: Sequence[Resources]) -> tuple[float, int]:
    """(CPUs, GPUs) a local Ray gets: the devices' cores and GPUs, or what the workers need."""
    cores = sum(len(d.cores) for d in plan.devices if not d.is_cuda)
    gpus = sum(1 for d in plan.devices if d.is_cuda)
    cpus = max(float(cores or 1), float(math.ceil(sum(r.cpus for r in needed) - 1e-9)))
    return cpus, gpus


def local_init_args(cpus: float, gpus: int) -> dict[str, Any]:
    """``ray.init`` arguments for a private local Ray: loopback, no dashboard, quiet."""
    return {
        "address": "local",
        "num_cpus": int(math.ceil(cpus)),
        "num_gpus": gpus,
        "include_dashboard": False,
        "_node_ip_address": "127.0.0.1",
        "log_to_driver": False,
        "logging_level": logging.ERROR,
        # Workers import gpubench (and a user's case) the way this process does.
        "runtime_env": {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}},
    }


@contextlib.contextmanager
def visible_gpus(devices: Sequence[Device]) -> Iterator[None]:
    """While a local Ray starts, let it see exactly the run's GPUs (its raylet inherits this)."""
    gpus = [d for d in devices if d.is_cuda]
    if not gpus:
        yield
        return
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(d.visible_as or str(d.index) for d in gpus)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


def start_local_ray(ray: Any, plan: Plan, needed: Sequence[Resources]) -> None:
    cpus, gpus = local_cluster_size(plan, needed)
    with visible_gpus(plan.devices), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Ray's FutureWarnings about env vars go to stderr
        ray.init(**local_init_args(cpus, gpus))


def check_capacity(ray: Any, needed: Sequence[Resources]) -> None:
    """Fail at once, not by waiting forever, when the cluster cannot place every worker."""
    total = ray.cluster_resources()
    for key, want in (("CPU", sum(r.cpus for r in needed)), ("GPU", sum(r.gpus for r in needed))):
        have = float(total.get(key, 0.0))
        if want > have + 1e-9:
            raise ModeFailure(
                f"the Ray cluster has {have:g} {key}(s) but {len(needed)} worker(s) reserve "
                f"{want:g}: lower --{key.lower()}s-per-worker or add nodes"
            )


# --- Ray's own processes ----------------------------------------------------------------------


def is_ray_process(name: str, cmdline: Sequence[str]) -> bool:
    text = " ".join(cmdline)
    return (
        name in ("raylet", "gcs_server")
        or name.startswith("ray::")
        or text.startswith("ray::")
        or f"{os.sep}ray{os.sep}" in text
    )


def ray_descendants() -> list[Any]:
    """Ray processes started under this process (a local Ray's head, raylet and workers)."""
    import psutil

    found = []
    with contextlib.suppress(psutil.Error):
        for p in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if is_ray_process(p.name(), p.cmdline()):
                    found.append(p)
    return found


def reap(procs: Sequence[Any], grace_s: float = 5.0) -> None:
    """Wait for ``procs`` to end after a shutdown; kill whatever is still there."""
    import psutil

    if not procs:
        return
    _, alive = psutil.wait_procs(list(procs), timeout=grace_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=2)


def describe_ray_error(exc: BaseException) -> str:
    """One line out of Ray's long error texts: the cause of a task error, else the first line."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        text = str(cause).strip().splitlines()
        return text[0] if text else type(cause).__name__
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# --- the actor --------------------------------------------------------------------------------


def _rss() -> int | None:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return None


class RayWorker:
    """The body of one Ray actor: a model replica and the data of its clients."""

    def __init__(self, setup: WorkerSetup, spec: WorkerSpec, resources: Resources) -> None:
        from gpubench.cases import load_case
        from gpubench.fl import ClientTrainer, build_datasets
        from gpubench.isolation import bind_process

        # The global model arrives as a read-only view of the object store: only read.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        self.spec = spec
        self.device_id = spec.device.id
        if spec.device.is_cuda:
            torch_device = "cuda:0"  # the GPU Ray assigned (it set CUDA_VISIBLE_DEVICES)
            self.device_id = self._assigned_gpu(spec.device)
        else:
            try:
                torch_device = bind_process(spec.device)
            except OSError:  # the slot's cores do not exist on this node
                torch_device = "cpu"
                torch.set_num_threads(max(1, int(resources.cpus)))
        case = load_case(setup.case)
        data = build_datasets(case, setup.train, spec.clients, setup.sizes, torch_device)
        self.trainer = ClientTrainer(
            case, setup.train, torch_device, self.device_id, spec.worker, data
        )
        self.rows = torch.zeros(len(spec.clients), sum(t.numel() for t in self.trainer.tensors))
        if torch_device.startswith("cuda"):
            torch.zeros(1, device=torch_device)  # the CUDA context belongs to the cold start

    @staticmethod
    def _assigned_gpu(device: Device) -> str:
        import ray

        ids = [str(i) for i in ray.get_gpu_ids()]
        return f"cuda:{ids[0]}" if ids and ids[0].isdigit() else device.id

    def ready(self) -> tuple[int, str, str]:
        import ray

        return os.getpid(), ray.get_runtime_context().get_node_id(), self.device_id

    def run_round(
        self, global_state: np.ndarray
    ) -> tuple[np.ndarray, list[ClientTiming], WorkerMemory]:
        from gpubench.cuda import peak_memory, reset_peak_memory

        flat = torch.from_numpy(global_state)
        dev = self.trainer.torch_device
        reset_peak_memory(dev)
        timings = [
            self.trainer.run(c, flat, self.rows[i]) for i, c in enumerate(self.spec.clients)
        ]
        allocated, reserved = peak_memory(dev)
        memory = WorkerMemory(
            self.spec.worker, self.device_id, os.getpid(), allocated, reserved, _rss()
        )
        return self.rows.numpy(), timings, memory


# --- the mode ---------------------------------------------------------------------------------


class RayMode(WorkerSpecs):
    name = "ray"

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.specs = plan_workers(plan, plan.devices, plan.config.workers_per_device)
        self.states = torch.zeros(plan.clients, plan.state_size)
        self.ray: Any = None
        self.actors: list[Any] = []
        self.actor_pids: dict[int, int] = {}  # worker -> pid
        self.local_pids: dict[int, str] = {}
        self.connected = False  # this mode called ray.init, so it disconnects
        self.started_ray = False  # ... and the Ray it started is its own to shut down
        self.ray_procs: list[Any] = []

    def pids(self) -> Mapping[int, str]:
        return dict(self.local_pids)

    def start(self) -> None:
        ray = import_ray()
        needed = [worker_resources(self.plan, s.device) for s in self.specs]
        address = ray_address(self.plan)
        self.ray = ray
        if not ray.is_initialized():  # else someone else's Ray: use it, leave it running
            self.connected = True
            if address:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            else:
                self.started_ray = True
                start_local_ray(ray, self.plan, needed)
                self.ray_procs = ray_descendants()
        check_capacity(ray, needed)
        cfg = self.plan.config
        setup = WorkerSetup(case=cfg.case, train=cfg.train, sizes=self.plan.sizes)
        remote_cls = ray.remote(RayWorker)
        for spec, res in zip(self.specs, needed, strict=True):
            actor = remote_cls.options(
                num_cpus=res.cpus, num_gpus=res.gpus, max_restarts=0, max_task_retries=0
            ).remote(setup, spec, res)
            self.actors.append(actor)
        here = ray.get_runtime_context().get_node_id()
        replies = self._gather([a.ready.remote() for a in self.actors], "start")
        for spec, (pid, node, device_id) in zip(self.specs, replies, strict=True):
            self.actor_pids[spec.worker] = pid
            if node == here:
                self.local_pids[pid] = device_id
        if self.started_ray:
            self.ray_procs = ray_descendants()

    def _gather(self, refs: list[Any], what: str) -> list[Any]:
        """Results of ``refs`` in order; the first failure (a dead actor, an exception in a
        client, a timeout) fails the mode at once with its reason."""
        ray = self.ray
        timeout_s = self.plan.config.timeout_s
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        index = {ref: i for i, ref in enumerate(refs)}
        pending = list(refs)
        out: list[Any] = [None] * len(refs)
        while pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, pending = ray.wait(pending, num_returns=1, timeout=left)
            if not ready:
                late = ", ".join(str(self.specs[index[r]].worker) for r in pending)
                raise ModeFailure(
                    f"timed out after {timeout_s:g} s waiting for ray actor(s) {late} ({what})"
                )
            for ref in ready:
                i = index[ref]
                try:
                    out[i] = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    spec = self.specs[i]
                    pid = self.actor_pids.get(spec.worker)
                    where = f"pid {pid}, {spec.device.id}" if pid else spec.device.id
                    raise ModeFailure(
                        f"ray actor {spec.worker} ({where}) died: {describe_ray_error(exc)}"
                    ) from None
                except ray.exceptions.RayError as exc:
                    raise ModeFailure(describe_ray_error(exc)) from None
        return out

    def run_round(self, global_state: torch.Tensor) -> RoundOutput:
        assert self.ray is not None, "start() first"
        ref = self.ray.put(global_state.numpy())  # once per round, shared by every actor
        replies = self._gather([a.run_round.remote(ref) for a in self.actors], "round")
        states = self.states.numpy()
        timings: list[ClientTiming] = []
        memory: list[WorkerMemory] = []
        for spec, (rows, clients, mem) in zip(self.specs, replies, strict=True):
            states[list(spec.clients)] = rows
            timings.extend(clients)
            memory.append(mem)
        return RoundOutput(self.states, timings, memory)

    def close(self) -> None:
        ray, self.ray = self.ray, None
        actors, self.actors = self.actors, []
        if ray is not None:
            for actor in actors:
                with contextlib.suppress(Exception):
                    ray.kill(actor, no_restart=True)
            if self.connected:
                with contextlib.suppress(Exception):
                    ray.shutdown()
        self.connected = False
        if self.started_ray:
            reap(self.ray_procs + ray_descendants())
            self.started_ray = False
        self.ray_procs = []
        self.local_pids = {}
