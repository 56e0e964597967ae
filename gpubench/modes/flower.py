"""``flower``: the same round through Flower as its users run it now, measured as a peer.

What runs: ``flwr run`` of a Flower App that gpubench writes for the run, against a private
local SuperLink with the simulation runtime (:mod:`gpubench.modes.flower_superlink`: its own
``FLWR_HOME`` and free ports, started and stopped by the mode). The app's ``ServerApp`` runs
Flower's own ``FedAvg`` (every client every round, weighted by ``num-examples`` as ours is; no
evaluation); its ``ClientApp`` runs our local training (:class:`gpubench.train.fl.ClientTrainer`:
same data, seeds and SGD), or the user's Flower app (``--case flower:...``) inside it. The run
is submitted with the federation configuration: one SuperNode per client, and the same
per-client resources as the ``ray`` mode's actors (``client-resources-num-cpus/-num-gpus``
from --cpus-per-worker / --gpus-per-worker, CPUs rounded up to a whole one as Flower requires;
``init-args-num-cpus/-num-gpus``: a local Ray of the devices' cores and GPUs, or
``RAY_ADDRESS`` for --ray-address), so on two CPU slots Flower runs two one-CPU actors.
Flower's actors are not pinned to a slot; for the monitor and the per-client records an actor
on a GPU counts as the run's device its ``CUDA_VISIBLE_DEVICES`` names, an actor on CPU slots
k as device k mod n. Every process of it (SuperLink, SuperExec, the simulation, its Ray) is a
descendant of gpubench's; the mode stops them all when it closes, also after Ctrl-C, SIGTERM
or a failing client app. The run's output (Flower's logs, its warnings) stays in its
``FLWR_HOME``; its outcome is the run's final status (``flwr list``), not an exit code.

How it is timed, the same way as the other modes:

* The ServerApp connects back to the mode (a loopback connection whose address and key file
  travel as absolute paths in ``--run-config``). Its strategy (a ``FedAvg`` subclass) runs
  server rounds until the mode stops it (the harness measures disturbed round sets again)
  and waits in ``configure_train`` for the mode's next round with its global model; the mode's ``run_round`` then times, on its own clock, Flower
  sending the messages, its actors training the clients, and ``aggregate_train`` returning
  Flower's aggregate.
* The first server round is the start-up round: each actor builds its model and every
  client's data (cached per actor, as a ``multi-gpu`` worker builds its own at start), and
  trains nothing. Cold start = ``start()`` until that round is aggregated: the SuperLink,
  ``flwr run``, the simulation process with its Ray and actor pool, and the set-up.
  :attr:`FlowerMode.startup` keeps the parts (``superlink_s``, ``submit_s`` for ``flwr run``,
  ``to_server_app_s``, ``to_first_configure_s``, ``to_ready_s``, each from ``start()``).
* Flower's server and engine poll for messages every 0.1 s, so its round times come in steps
  of about 0.1 s.
* Every round starts from the harness's global model (not Flower's previous aggregate), as in
  every other mode. The round's states are Flower's aggregate repeated once per client, so
  the harness's FedAvg gives back Flower's aggregate and its check compares Flower's model
  with serial's; every client's update is fingerprinted in its actor and checked too.

Flower older than 1.27 (whose ``flwr run`` has no local simulation) fails the mode with one
line naming the version it needs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection, Listener, wait
from pathlib import Path
from typing import Any

import torch

from gpubench.modes.base import ModeDefaults, ModeFailure, Plan, RoundOutput
from gpubench.modes.facts import FACTS
from gpubench.modes.flower_engine import FlowerSetup
from gpubench.modes.flower_superlink import (
    FINISHED,
    LocalSuperLink,
    SuperLinkPlace,
    check_flwr_version,
    flwr_version,
    last_lines,
    write_app,
)
from gpubench.modes.processes import check_parent_gpu_shared
from gpubench.modes.ray_common import (
    Resources,
    local_cluster_size,
    ray_address,
    ray_worker_environment,
    worker_resources,
)

# The ServerApp runs server rounds until the mode stops it: the harness decides how many rounds
# it measures (round sets disturbed by other programs are measured again).
UNTIL_STOPPED = 1_000_000
FLOWER_MISSING = "flwr is not installed: pip install 'gpubench[flower]'"
# Flower's server and simulation engine poll for messages every 0.1 s (its round times come in
# steps of it; the findings say so beside the flower row).
FLOWER_POLL_S = 0.1


# --- the mode (in gpubench's process) -------------------------------------------------------


def client_resources(plan: Plan) -> Resources:
    """A client's reservation as the federation configuration takes it (whole CPUs, >= 1)."""
    per = worker_resources(plan, plan.devices[0])
    return Resources(float(max(1, math.ceil(per.cpus - 1e-9))), per.gpus)


def wanted_actors(plan: Plan, per_client: Resources) -> list[Resources]:
    """--workers-per-device actors on each device: a local Ray is sized to hold them all."""
    return [per_client] * (len(plan.devices) * plan.config.workers_per_device)


def federation_config(plan: Plan) -> dict[str, Any]:
    """``flwr run --federation-config``: one SuperNode per client and the ray mode's resources."""
    per = client_resources(plan)
    config: dict[str, Any] = {
        "num-supernodes": plan.clients,
        "client-resources-num-cpus": int(per.cpus),
        "client-resources-num-gpus": per.gpus,
        "init-args-log-to-driver": False,
    }
    if not ray_address(plan):
        cpus, gpus = local_cluster_size(plan, wanted_actors(plan, per))
        config["init-args-num-cpus"] = int(math.ceil(cpus))
        config["init-args-num-gpus"] = gpus
    return config


def superlink_environment(plan: Plan) -> dict[str, str]:
    """What the SuperLink, and with it the simulation, its Ray and every actor, inherits:
    this process's import path, the run's GPUs, and a --ray-address as ``RAY_ADDRESS``."""
    env = ray_worker_environment(plan.devices)
    address = ray_address(plan)
    if address:
        env["RAY_ADDRESS"] = address
    return env


class FlowerMode(ModeDefaults):
    name = "flower"
    facts = FACTS[name]

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.superlink: LocalSuperLink | None = None
        self.listener: Listener | None = None
        self.conn: Connection | None = None
        self.run_id: int | None = None
        self.tmp: Path | None = None
        self.idle = False  # the ServerApp waits for the next round (a clean stop is possible)
        self.actor_pids: dict[int, str] = {}
        self.startup: dict[str, float] = {}
        self.final_status: str | None = None
        self.version = ""

    @property
    def device_ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.plan.devices)

    @property
    def workers(self) -> int:
        """Flower's actors: as many as the cluster's resources hold (before start: expected)."""
        if self.actor_pids:
            return len(self.actor_pids)
        if ray_address(self.plan):
            return len(self.plan.devices)
        per = client_resources(self.plan)
        cpus, gpus = local_cluster_size(self.plan, wanted_actors(self.plan, per))
        fits = [int(cpus // per.cpus)]
        if per.gpus:
            fits.append(int(gpus // per.gpus))
        return max(1, min(self.plan.clients, *fits))

    def pids(self) -> Mapping[int, str]:
        return dict(self.actor_pids)

    def startup_parts(self) -> Mapping[str, float]:
        return dict(self.startup)

    def engine(self) -> Mapping[str, Any]:
        return {"engine": "flwr run", "flwr": self.version, "round_step_s": FLOWER_POLL_S,
                "federation_config": federation_config(self.plan)}

    def start(self) -> None:
        for module in ("flwr", "ray"):
            if importlib.util.find_spec(module) is None:
                raise ModeFailure(FLOWER_MISSING)
        check_parent_gpu_shared(self.name, self.plan, self.plan.devices)
        self.version = flwr_version()
        check_flwr_version(self.version)
        t0 = time.perf_counter()
        self.tmp = Path(tempfile.mkdtemp(prefix="gpubench-flower-"))
        self.superlink = LocalSuperLink(SuperLinkPlace.allocate(self.tmp),
                                        superlink_environment(self.plan))
        self.superlink.start()
        self.startup["superlink_s"] = time.perf_counter() - t0
        key = secrets.token_bytes(32)
        key_file = self.tmp / "link.key"
        key_file.touch(mode=0o600)
        key_file.write_bytes(key)
        self.listener = Listener(("127.0.0.1", 0), authkey=key)
        host, port = self.listener.address
        self.run_id = self.superlink.submit(
            write_app(self.tmp / "app"), federation_config(self.plan),
            {"gpubench-link": f"{host}:{port}", "gpubench-key": str(key_file)},
        )
        self.startup["submit_s"] = time.perf_counter() - t0
        cfg = self.plan.config
        timeout = None if cfg.timeout_s is None else cfg.timeout_s + 120
        self.conn = self._accept(timeout)
        self.startup["to_server_app_s"] = time.perf_counter() - t0
        setup = FlowerSetup(
            case=cfg.case, train=cfg.train, sizes=self.plan.sizes, devices=self.plan.devices,
            server_rounds=UNTIL_STOPPED, timeout_s=cfg.timeout_s,
        )
        self.conn.send(("setup", setup))
        msg = self._receive("ready", timeout)
        self.startup["to_ready_s"] = time.perf_counter() - t0
        if msg[3] is not None:  # the ServerApp's first configure_train, on the same clock
            self.startup["to_first_configure_s"] = max(0.0, float(msg[3]) - t0)
        self.actor_pids = dict(msg[2])
        self.idle = True

    def _accept(self, timeout_s: float | None) -> Connection:
        """The ServerApp's connection, or why the run ended without one."""
        assert self.listener is not None
        got: list[Connection] = []
        listener = self.listener

        def accept() -> None:
            with contextlib.suppress(OSError, EOFError):
                got.append(listener.accept())

        waiter = threading.Thread(target=accept, name="gpubench-flower-accept", daemon=True)
        waiter.start()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        next_status = time.monotonic() + 5.0
        while waiter.is_alive() and not got:
            waiter.join(0.2)
            if got:
                break
            self._check_superlink()
            if time.monotonic() > next_status:  # each status is a process: poll rarely
                status = self._status()
                if (status or "").startswith(FINISHED):
                    raise self._ended(status)
                next_status = time.monotonic() + 5.0
            if deadline is not None and time.monotonic() > deadline:
                raise ModeFailure(f"timed out after {timeout_s:g} s waiting for Flower's ServerApp")
        if not got:
            raise ModeFailure("the ServerApp's connection failed")
        return got[0]

    def _status(self) -> str | None:
        assert self.superlink is not None and self.run_id is not None
        return self.superlink.status(self.run_id)

    def _check_superlink(self) -> None:
        assert self.superlink is not None
        if not self.superlink.alive():
            proc = self.superlink.proc
            code = None if proc is None else proc.returncode
            raise ModeFailure(f"flower-superlink ended (exit code {code})")

    def _ended(self, status: str | None) -> ModeFailure:
        """Why the run ended early: its status and the last line of its log."""
        assert self.superlink is not None and self.run_id is not None
        logged = last_lines(self.superlink.run_log(self.run_id), 40)
        last = f": {logged[-1].strip()}" if logged else ""
        return ModeFailure(f"the Flower run {self.run_id} ended ({status or 'status unknown'}){last}",
                           "\n".join(logged) or None)

    def _receive(self, kind: str, timeout_s: float | None) -> tuple[Any, ...]:
        assert self.conn is not None
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            if wait([self.conn], timeout=left):
                try:
                    msg = self.conn.recv()
                except (EOFError, OSError):
                    self.idle = False
                    raise self._ended(self._wait_status(30.0)) from None
                if msg[0] == "error":
                    raise ModeFailure(msg[1], msg[2] if len(msg) > 2 else None)
                if msg[0] == kind:
                    return tuple(msg)
                continue
            self._check_superlink()
            if deadline is not None and time.monotonic() >= deadline:
                raise ModeFailure(f"timed out after {timeout_s:g} s waiting for Flower ({kind})")

    def _wait_status(self, timeout_s: float) -> str | None:
        assert self.superlink is not None and self.run_id is not None
        return self.superlink.wait_finished(self.run_id, timeout_s)

    def run_round(self, global_state: torch.Tensor, fingerprints: torch.Tensor) -> RoundOutput:
        """Flower aggregates itself: its aggregate comes back as one partial sum,
        (aggregate - global) x the samples it averaged."""
        assert self.conn is not None, "start() first"
        self.idle = False
        try:
            self.conn.send(("round", global_state.detach().to(torch.float32).numpy()))
        except OSError:
            raise self._ended(self._wait_status(30.0)) from None
        _, timings, memory, fps, aggregate = self._receive("done", self.plan.config.timeout_s)
        self.idle = True
        for client, fp in fps.items():
            fingerprints[client] = torch.tensor(fp, dtype=torch.float64)
        weight = float(sum(t.samples for t in timings))
        flower = torch.from_numpy(aggregate).to(torch.float64)
        partial = (flower - global_state.to(torch.float64)) * weight
        return RoundOutput([partial], [weight], fingerprints, list(timings), list(memory))

    def close(self) -> None:
        """A ServerApp waiting for a round is asked to stop and its run to finish; otherwise
        (Ctrl-C or a failure in a round) the SuperLink and everything under it stop now."""
        conn, self.conn = self.conn, None
        idle, self.idle = self.idle, False
        try:
            if conn is not None and idle:
                with contextlib.suppress(OSError, ValueError):
                    conn.send(("stop",))
                    wait([conn], timeout=15.0)  # the ServerApp closes it when it returns
                self.final_status = self._wait_status(20.0)
        finally:
            if conn is not None:
                conn.close()
            listener, self.listener = self.listener, None
            if listener is not None:
                listener.close()
            superlink, self.superlink = self.superlink, None
            if superlink is not None:
                superlink.stop()
            tmp, self.tmp = self.tmp, None
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            self.actor_pids = {}
