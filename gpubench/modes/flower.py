"""``flower``: the same round through Flower's simulation engine, measured as a peer.

What runs: ``flwr.simulation.run_simulation`` with one virtual SuperNode per client, a
``ClientApp`` whose ``train`` runs our local training (:class:`gpubench.train.fl.ClientTrainer`:
same data, seeds and SGD) and a ``ServerApp`` running Flower's own ``FedAvg`` (every client
every round, weighted by ``num-examples`` as ours is; no evaluation). Its Ray backend gets
the same per-client resources as the ``ray`` mode's actors (``client_resources`` from
--cpus-per-worker / --gpus-per-worker, a local Ray of the devices' cores and GPUs, or
--ray-address), so on two CPU slots Flower runs two one-CPU actors. Flower's actors are not
pinned to a slot; for the monitor and the per-client records an actor on a GPU counts as the
run's device its ``CUDA_VISIBLE_DEVICES`` names (a UUID or an index, as Ray hands it over), an
actor on CPU slots k as device k mod n.
A local Ray is started by the driver as the ray mode starts its own
(:func:`gpubench.modes.ray_common.local_ray_environment`); Flower, finding Ray running, uses it
and stops it at its end.

Where: in a driver process of its own (spawn), because Flower owns the process it runs in
(``ray.init``/``ray.shutdown``, its loggers, ``sys.exit`` on some errors), and so that every
Flower process (driver, Ray's head, raylet, actors) is a descendant of gpubench's and none can
outlive the mode. Flower's telemetry is turned off.

How it is timed, the same way as the other modes:

* The driver's strategy (a ``FedAvg`` subclass) runs 1 + warm-up + rounds server rounds and
  blocks in ``configure_train`` until the parent asks for the next round; the parent's
  ``run_round`` then times, on its own clock, Flower sending the messages, its actors training
  the clients, and ``aggregate_train`` returning Flower's aggregate (through shared memory).
* The first server round is the start-up round: each actor builds its model and every
  client's data (cached per actor, as a ``multi-gpu`` worker builds its own at start), and
  trains nothing. Cold start = ``start()`` until that round is aggregated: spawning the
  driver, importing flwr, ``run_simulation`` starting Ray and the actor pool, and the setup.
  Flower calls ``configure_train`` before its actors exist (it registers nodes first), so
  "until the first ``configure_train``" alone would leave out Ray and the actors.
  :attr:`FlowerMode.startup` keeps the parts (import, ``run_simulation`` to the first
  ``configure_train``, to the end of the setup round).
* Every round starts from the harness's global model (not Flower's previous aggregate), as in
  every other mode. The round's states are Flower's aggregate repeated once per client, so
  the harness's FedAvg gives back Flower's aggregate and its check compares Flower's model
  with serial's.
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection, wait
from typing import Any

import torch
import torch.multiprocessing as tmp

from gpubench.modes.base import ModeDefaults, ModeFailure, Plan, RoundOutput
from gpubench.modes.flower_engine import FlowerSetup, driver_main
from gpubench.modes.pool import describe_exit, sigint_deferred
from gpubench.modes.processes import check_parent_gpu_shared
from gpubench.modes.ray_common import (
    Resources,
    local_cluster_size,
    local_init_args,
    ray_address,
    ray_descendants,
    reap,
    worker_resources,
)

FLOWER_MISSING = "flwr is not installed: pip install 'gpubench[flower]'"


# --- the mode (in gpubench's process) -------------------------------------------------------


def wanted_actors(plan: Plan, per_client: Resources) -> list[Resources]:
    """--workers-per-device actors on each device: a local Ray is sized to hold them all."""
    return [per_client] * (len(plan.devices) * plan.config.workers_per_device)


def backend_config(plan: Plan, per_client: Resources) -> dict[str, Any]:
    address = ray_address(plan)
    if address:
        init_args: dict[str, Any] = {"address": address, "log_to_driver": False}
    else:
        cpus, gpus = local_cluster_size(plan, wanted_actors(plan, per_client))
        init_args = local_init_args(cpus, gpus)
    return {
        "client_resources": {"num_cpus": per_client.cpus, "num_gpus": per_client.gpus},
        "init_args": init_args,
    }


class FlowerMode(ModeDefaults):
    name = "flower"

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.proc: Any = None
        self.conn: Connection | None = None
        self.global_state = torch.empty(plan.state_size).share_memory_().zero_()
        self.aggregate = torch.empty(plan.state_size).share_memory_().zero_()
        self.actor_pids: dict[int, str] = {}
        self.startup: dict[str, float] = {}
        self.ray_procs: list[Any] = []

    @property
    def device_ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.plan.devices)

    @property
    def workers(self) -> int:
        """Flower's actors: as many as the cluster's resources hold (before start: expected)."""
        if self.actor_pids:
            return len(self.actor_pids)
        per = worker_resources(self.plan, self.plan.devices[0])
        if ray_address(self.plan):
            return len(self.plan.devices)
        cpus, gpus = local_cluster_size(self.plan, wanted_actors(self.plan, per))
        fits = [int(cpus // per.cpus) if per.cpus else self.plan.clients]
        if per.gpus:
            fits.append(int(gpus // per.gpus))
        return max(1, min(self.plan.clients, *fits))

    def pids(self) -> Mapping[int, str]:
        return dict(self.actor_pids)

    def startup_parts(self) -> Mapping[str, float]:
        return dict(self.startup)

    def start(self) -> None:
        for module, hint in (("flwr", FLOWER_MISSING), ("ray", FLOWER_MISSING)):
            if importlib.util.find_spec(module) is None:
                raise ModeFailure(hint)
        check_parent_gpu_shared(self.name, self.plan, self.plan.devices)
        cfg = self.plan.config
        per_client = worker_resources(self.plan, self.plan.devices[0])
        setup = FlowerSetup(
            case=cfg.case,
            train=cfg.train,
            sizes=self.plan.sizes,
            devices=self.plan.devices,
            server_rounds=1 + cfg.warmup + cfg.rounds,
            timeout_s=cfg.timeout_s,
            backend_config=backend_config(self.plan, per_client),
        )
        ctx = tmp.get_context("spawn")
        parent_end, child_end = ctx.Pipe()
        # The driver and its Ray inherit an ignored SIGINT (Ctrl-C is ours); one pressed
        # while it spawns is held back, not lost.
        with sigint_deferred():
            proc = ctx.Process(
                target=driver_main,
                args=(setup, self.global_state, self.aggregate, child_end),
                name="gpubench-flower",
                daemon=False,  # it starts Ray's processes of its own
            )
            proc.start()
            self.proc = proc
        child_end.close()
        self.conn = parent_end
        msg = self._receive("ready", None if cfg.timeout_s is None else cfg.timeout_s + 60)
        self.actor_pids = dict(msg[2])
        self.startup = dict(msg[3])
        self.ray_procs = ray_descendants()

    def _receive(self, kind: str, timeout_s: float | None) -> tuple[Any, ...]:
        assert self.conn is not None and self.proc is not None
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait([self.conn, self.proc.sentinel], timeout=left)
            if not ready:
                raise ModeFailure(f"timed out after {timeout_s:g} s waiting for Flower ({kind})")
            if self.conn in ready or self.conn.poll():
                try:
                    msg = self.conn.recv()
                except (EOFError, OSError):
                    msg = None
                if msg is not None:
                    if msg[0] == "error":
                        raise ModeFailure(msg[1], msg[2] if len(msg) > 2 else None)
                    if msg[0] == kind:
                        return tuple(msg)
                    continue
            if not self.proc.is_alive() or self.proc.sentinel in ready:
                self.proc.join(1)
                raise ModeFailure(
                    f"the Flower driver (pid {self.proc.pid}) died with "
                    f"{describe_exit(self.proc.exitcode)}"
                )

    def run_round(self, global_state: torch.Tensor, fingerprints: torch.Tensor) -> RoundOutput:
        """Flower aggregates itself: its aggregate comes back as one partial sum,
        (aggregate - global) x the samples it averaged."""
        assert self.conn is not None, "start() first"
        self.global_state.copy_(global_state)
        self.conn.send(("round",))
        _, timings, memory, fps = self._receive("done", self.plan.config.timeout_s)
        for client, fp in fps.items():
            fingerprints[client] = torch.tensor(fp, dtype=torch.float64)
        weight = float(sum(t.samples for t in timings))
        partial = (self.aggregate.to(torch.float64) - global_state.to(torch.float64)) * weight
        return RoundOutput([partial], [weight], fingerprints, list(timings), list(memory))

    def close(self) -> None:
        proc, self.proc = self.proc, None
        conn, self.conn = self.conn, None
        procs = self.ray_procs + ray_descendants()
        if conn is not None:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("stop",))
        if proc is not None:
            proc.join(15)  # Flower stops its actors and its Ray
            if proc.is_alive():
                proc.terminate()
                proc.join(3)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
        if conn is not None:
            conn.close()
        # Flower has stopped its Ray (or the driver is gone): what is left of it, actors
        # that have not noticed yet, is ended now rather than waited for.
        reap(procs + ray_descendants(), grace_s=0.2)
        self.ray_procs = []
        self.actor_pids = {}
