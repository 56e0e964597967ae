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
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from gpubench.machine.devices import Device, device_of_visible, visible_entry
from gpubench.modes.base import ModeFailure, Plan, RoundOutput, process_rss
from gpubench.modes.facts import FACTS, placed
from gpubench.modes.pool import WorkerSetup, WorkerSpec
from gpubench.modes.processes import WorkerSpecs, check_parent_gpu_shared, plan_workers
from gpubench.modes.ray_common import (
    Resources,
    check_capacity,
    describe_ray_error,
    import_ray,
    ray_address,
    ray_descendants,
    reap,
    start_local_ray,
    worker_resources,
)
from gpubench.results import ClientTiming, WorkerMemory
from gpubench.train.updates import FINGERPRINT_SIZE


class RayWorker:
    """The body of one Ray actor: a model replica and the data of its clients."""

    def __init__(
        self, setup: WorkerSetup, spec: WorkerSpec, resources: Resources,
        devices: tuple[Device, ...] = (),
    ) -> None:
        from gpubench.cases import load_case
        from gpubench.machine.isolation import bind_process
        from gpubench.train.fl import build_datasets, make_trainer

        # The global model arrives as a read-only view of the object store: only read.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        self.spec = spec
        self.device_id = spec.device.id
        self.node: str | None = None  # the Ray node it runs on, once ready() asked
        if spec.device.is_cuda:
            torch_device = "cuda:0"  # the GPU Ray assigned (it set CUDA_VISIBLE_DEVICES)
            self.device_id = self._assigned_gpu(spec.device, devices or (spec.device,))
        else:
            try:
                torch_device = bind_process(spec.device)
            except OSError:  # the slot's cores do not exist on this node
                torch_device = "cpu"
                torch.set_num_threads(max(1, int(resources.cpus)))
        case = load_case(setup.case)
        data = build_datasets(case, setup.train, spec.clients, setup.sizes, torch_device)
        self.trainer = make_trainer(
            case, setup.train, torch_device, self.device_id, spec.worker, data
        )
        self.fingerprints = torch.zeros(max(spec.clients, default=0) + 1, FINGERPRINT_SIZE,
                                        dtype=torch.float64)
        if torch_device.startswith("cuda"):
            torch.zeros(1, device=torch_device)  # the CUDA context belongs to the cold start

    @staticmethod
    def _assigned_gpu(planned: Device, devices: tuple[Device, ...]) -> str:
        """The run's device Ray gave this actor (by the UUID or index it handed over); the
        planned one where Ray's GPU is not one of them (another node of a cluster)."""
        import ray

        ids = ray.get_gpu_ids()
        found = device_of_visible(ids[0] if ids else visible_entry(), devices)
        return (found or planned).id

    def ready(self) -> tuple[int, str, str]:
        import ray

        self.node = ray.get_runtime_context().get_node_id()
        return os.getpid(), self.node, self.device_id

    def run_round(
        self, global_state: np.ndarray
    ) -> tuple[np.ndarray, float, np.ndarray, list[ClientTiming], WorkerMemory]:
        """(partial sum, its weight, this actor's clients' fingerprints, timings, memory).

        The timings' ``start_s``/``end_s`` are seconds since this actor began the round, on
        its own node's clock: another node's ``perf_counter`` has another origin.
        """
        from gpubench.machine.cuda import peak_memory, reset_peak_memory

        begun = time.perf_counter()
        flat = torch.from_numpy(global_state)
        dev = self.trainer.torch_device
        reset_peak_memory(dev)
        sink = self.trainer.sink
        sink.begin(flat)
        self.fingerprints.fill_(float("nan"))
        timings = [
            replace(t, start_s=t.start_s - begun, end_s=t.end_s - begun)
            for t in (self.trainer.run(c, self.fingerprints) for c in self.spec.clients)
        ]
        partial = sink.finish()
        allocated, reserved = peak_memory(dev)
        memory = WorkerMemory(
            self.spec.worker, self.device_id, os.getpid(), allocated, reserved, process_rss(),
            node=self.node,
        )
        fps = self.fingerprints[list(self.spec.clients)].numpy()
        return partial.numpy(), sink.weight, fps, timings, memory


# --- the mode ---------------------------------------------------------------------------------


class RayMode(WorkerSpecs):
    name = "ray"
    facts = FACTS[name]

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.specs = plan_workers(plan, *placed(self.facts, plan.devices, plan.config))
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
        check_parent_gpu_shared(self.name, self.plan, [s.device for s in self.specs])
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
            ).remote(setup, spec, res, tuple(self.plan.devices))
            self.actors.append(actor)
        replies = self._gather([a.ready.remote() for a in self.actors], "start")
        # The monitor samples the actors on this machine (every node of a local cluster).
        host_of = {n["NodeID"]: n.get("NodeManagerAddress") for n in ray.nodes()}
        here = host_of.get(ray.get_runtime_context().get_node_id())
        for spec, (pid, node, device_id) in zip(self.specs, replies, strict=True):
            self.actor_pids[spec.worker] = pid
            if host_of.get(node) == here:
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

    def run_round(self, global_state: torch.Tensor, fingerprints: torch.Tensor) -> RoundOutput:
        assert self.ray is not None, "start() first"
        # Each actor's timings are relative to its own start of the round; on this clock that
        # start is taken as the moment the round was sent (what separates them is Ray's
        # dispatch, not training).
        sent = time.perf_counter()
        ref = self.ray.put(global_state.numpy())  # once per round, shared by every actor
        replies = self._gather([a.run_round.remote(ref) for a in self.actors], "round")
        partials: list[torch.Tensor] = []
        weights: list[float] = []
        timings: list[ClientTiming] = []
        memory: list[WorkerMemory] = []
        # The replies are read-only views of the object store; they are only read here (FedAvg
        # adds the partial sums into a sum of its own), so no state-sized copy per actor.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            views = [(torch.from_numpy(p), torch.from_numpy(f)) for p, _, f, _, _ in replies]
        for spec, (partial, fps), (_, weight, _, clients, mem) in zip(
            self.specs, views, replies, strict=True
        ):
            partials.append(partial)
            weights.append(float(weight))
            fingerprints[list(spec.clients)] = fps
            timings.extend(
                replace(t, start_s=sent + t.start_s, end_s=sent + t.end_s) for t in clients
            )
            memory.append(mem)
        return RoundOutput(partials, weights, fingerprints, timings, memory)

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
