"""Flower's side of the flower mode: the ClientApp that runs in Flower's Ray actors and the
ServerApp (in the simulation process ``flwr run`` starts) whose strategy the flower mode drives
round by round over a connection of its own. See :mod:`gpubench.modes.flower` for how it is
timed.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from gpubench.config import TrainConfig
from gpubench.machine.devices import Device, device_of_visible, visible_entry
from gpubench.modes.base import process_rss
from gpubench.results import ClientTiming, WorkerMemory


@dataclass(frozen=True)
class FlowerSetup:
    """What the driver and every ClientApp need; pickled into the train config."""

    case: str
    train: TrainConfig
    sizes: tuple[int, ...]
    devices: tuple[Device, ...]
    server_rounds: int
    timeout_s: float | None


# --- the ClientApp side (runs inside Flower's Ray actors) -------------------------------------


@dataclass
class _ActorState:
    trainer: Any
    names: list[str]
    shapes: list[tuple[int, ...]]
    fingerprints: torch.Tensor  # (clients x K): a client's row is filled when it trains
    device_position: int  # the actor's GPU in the run's devices; -1: none (CPU slots)


_ACTOR: dict[bytes, _ActorState] = {}


def _actor_state(blob: bytes) -> _ActorState:
    """This actor's model and every client's data, built once per actor process."""
    state = _ACTOR.get(blob)
    if state is None:
        from gpubench.cases import load_case
        from gpubench.train.fl import build_datasets, make_trainer

        setup: FlowerSetup = pickle.loads(blob)
        torch_device = "cuda:0" if torch.cuda.is_available() else "cpu"
        case = load_case(setup.case)
        clients = range(len(setup.sizes))
        data = build_datasets(case, setup.train, clients, setup.sizes, torch_device)
        # A case's own trainer (a Flower app: the user's ClientApp runs here, in Flower's
        # actor, on the arrays Flower's server sent) or the built-in one.
        trainer = make_trainer(case, setup.train, torch_device, "flower", 0, data)
        own: Any = trainer
        names = list(getattr(own, "names", None) or own.model.state_dict().keys())
        shapes = list(getattr(own, "shapes", None) or [tuple(t.shape) for t in own.tensors])
        from gpubench.train.updates import FINGERPRINT_SIZE

        fps = torch.zeros(len(setup.sizes), FINGERPRINT_SIZE, dtype=torch.float64)
        state = _ACTOR[blob] = _ActorState(trainer, names, shapes, fps,
                                           actor_device_position(setup.devices))
    return state


def actor_device_position(devices: Sequence[Device]) -> int:
    """Where in the run's devices the GPU Ray handed this actor is; -1 without one."""
    found = device_of_visible(visible_entry(), devices)
    return devices.index(found) if found is not None else -1


def _flat(record: Any) -> torch.Tensor:
    import numpy as np

    return torch.from_numpy(
        np.concatenate([a.numpy().reshape(-1).astype(np.float32) for a in record.values()])
    )


def _client_train(msg: Any, context: Any) -> Any:
    from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict

    config = msg.content["config"]
    state = _actor_state(bytes(config["setup"]))
    client = int(context.node_config["partition-id"])
    trainer = state.trainer
    metrics: dict[str, Any] = {"client": client, "pid": os.getpid(), "rss": process_rss() or 0}
    metrics["gpu"] = state.device_position
    if bool(config["setup-round"]):
        metrics["num-examples"] = 1
        arrays = msg.content["arrays"]
    else:
        from gpubench.train.fl import flatten_state

        # Flower aggregates the arrays itself: the sink only fingerprints the update.
        trainer.sink.begin(_flat(msg.content["arrays"]))
        t = trainer.run(client, state.fingerprints, fold=False)
        metrics.update({"num-examples": t.samples, "load-s": t.load_s, "train-s": t.train_s,
                        "write-s": t.write_s, "start-s": t.start_s, "end-s": t.end_s,
                        "fingerprint": [float(v) for v in state.fingerprints[client]]})
        metrics.update({f"phase-{k}": v for k, v in t.phases.items()})
        if t.wait_s is not None:  # the actor's training thread's waiting for a CPU
            metrics["wait-s"] = t.wait_s
        trained = trainer.trained() if hasattr(trainer, "trained") else flatten_state(trainer.tensors)
        parts = torch.split(trained, [int(torch.Size(s).numel()) for s in state.shapes])
        arrays = ArrayRecord(
            {n: Array(p.reshape(s).numpy().copy())
             for n, p, s in zip(state.names, parts, state.shapes, strict=True)}
        )
    content = RecordDict({"arrays": arrays, "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


def make_client_app() -> Any:
    from flwr.clientapp import ClientApp

    app = ClientApp()
    app.train()(_client_train)
    return app


# --- the ServerApp side (runs in Flower's simulation process) ------------------------------------------


class _Stop(Exception):
    """The flower mode asked the ServerApp to stop (or went away)."""


def make_strategy(setup: FlowerSetup, blob: bytes, link: _ServerLink) -> Any:
    from flwr.app import Array, ArrayRecord
    from flwr.serverapp.strategy import FedAvg

    clients = len(setup.sizes)

    class MeasuredFedAvg(FedAvg):  # type: ignore[misc]
        """Flower's FedAvg, driven round by round by the flower mode."""

        def configure_train(self, server_round: int, arrays: Any, config: Any, grid: Any) -> Any:
            if server_round == 1:
                link.first_configure = time.perf_counter()
            else:
                flat = link.wait_for_round()
                at, parts = 0, {}
                for name, a in arrays.items():  # the harness's model, in Flower's layout
                    n = math.prod(a.shape)
                    parts[name] = Array(flat[at : at + n].reshape(a.shape).copy())
                    at += n
                arrays = ArrayRecord(parts)
            config["setup"] = blob
            config["setup-round"] = server_round == 1
            return super().configure_train(server_round, arrays, config, grid)

        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            replies = list(replies)
            failed = [m for m in replies if m.has_error()]
            if failed or len(replies) < clients:
                reason = (
                    failed[0].error.reason if failed
                    else f"{clients - len(replies)} of {clients} clients sent no reply"
                )
                link.send(("error", f"a Flower client failed: {_short(reason)}"))
                raise _Stop(reason)
            arrays, metrics = super().aggregate_train(server_round, replies)
            link.report(server_round, arrays, [m.content["metrics"] for m in replies])
            return arrays, metrics

    return MeasuredFedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=clients,
        min_available_nodes=clients,
    )


def _short(reason: str) -> str:
    lines = [line.strip() for line in str(reason).splitlines() if line.strip()]
    return lines[-1] if lines else "no reason given"


class _ServerLink:
    """The ServerApp's connection to gpubench's flower mode."""

    def __init__(self, conn: Connection, setup: FlowerSetup) -> None:
        self.conn = conn
        self.setup = setup
        self.first_configure: float | None = None
        self.workers: dict[int, int] = {}  # actor pid -> worker number

    def send(self, msg: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(msg)

    def wait_for_round(self) -> Any:
        """The next round's global model (a flat float32 array)."""
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            raise _Stop("the flower mode went away") from None
        if msg[0] != "round":
            raise _Stop("stopped by the flower mode")
        return msg[1]

    def report(self, server_round: int, arrays: Any, metrics: list[Any]) -> None:
        for m in sorted(metrics, key=lambda m: int(m["pid"])):
            self.workers.setdefault(int(m["pid"]), len(self.workers))
        if server_round == 1:
            actors = {
                int(m["pid"]): self._device(int(m["pid"]), int(m["gpu"])) for m in metrics
            }
            self.send(("ready", os.getpid(), actors, self.first_configure))
            return
        timings, memory, fingerprints = [], {}, {}
        for m in metrics:
            pid = int(m["pid"])
            worker = self.workers[pid]
            device = self._device(pid, int(m["gpu"]))
            phases = {k[len("phase-"):]: float(v) for k, v in m.items() if k.startswith("phase-")}
            timings.append(ClientTiming(
                client=int(m["client"]), device=device, worker=worker,
                samples=int(m["num-examples"]), load_s=float(m["load-s"]),
                train_s=float(m["train-s"]), write_s=float(m["write-s"]),
                start_s=float(m["start-s"]), end_s=float(m["end-s"]), phases=phases,
                wait_s=float(m["wait-s"]) if "wait-s" in m else None,
            ))
            fingerprints[int(m["client"])] = [float(v) for v in m["fingerprint"]]
            memory[worker] = WorkerMemory(worker, device, pid, None, None, int(m["rss"]) or None)
        self.send(("done", timings, [memory[k] for k in sorted(memory)], fingerprints,
                   _flat(arrays).numpy()))

    def _device(self, pid: int, position: int) -> str:
        """The device an actor reported (its place in the run's devices); on CPU slots, which
        Flower's actors are not pinned to, actor k counts as device k mod n."""
        devices = self.setup.devices
        if 0 <= position < len(devices):
            return devices[position].id
        return devices[self.workers.setdefault(pid, len(self.workers)) % len(devices)].id


def initial_record(setup: FlowerSetup) -> Any:
    """The run's starting model as the ArrayRecord Flower's server sends."""
    from flwr.app import Array, ArrayRecord

    from gpubench.cases import load_case
    from gpubench.train.fl import initial_global_state, state_tensors

    case = load_case(setup.case)
    model = case.build_model()
    initial = initial_global_state(case, setup.train.seed)
    names = list(model.state_dict().keys())
    parts = torch.split(initial, [t.numel() for t in state_tensors(model)])
    return ArrayRecord(
        {n: Array(p.reshape(t.shape).numpy().copy())
         for n, p, t in zip(names, parts, state_tensors(model), strict=True)}
    )


def connect(run_config: Any) -> Connection:
    """The connection to the flower mode whose address and key file ``--run-config`` names."""
    from multiprocessing.connection import Client

    host, _, port = str(run_config["gpubench-link"]).rpartition(":")
    key = Path(str(run_config["gpubench-key"])).read_bytes()
    return Client((host, int(port)), authkey=key)


def serve(grid: Any, context: Any) -> None:
    """The ServerApp's main: Flower's FedAvg, one round each time the flower mode asks."""
    with connect(context.run_config) as conn:
        msg = conn.recv()
        setup: FlowerSetup = msg[1]
        link = _ServerLink(conn, setup)
        try:
            strategy = make_strategy(setup, pickle.dumps(setup), link)
            strategy.start(
                grid=grid, initial_arrays=initial_record(setup),
                num_rounds=setup.server_rounds, timeout=setup.timeout_s or 3600.0,
            )
        except _Stop:
            # Stopped by the mode, or a failed round already reported: the ServerApp ends
            # as a finished one does.
            pass
        except BaseException as exc:  # reported, then Flower marks the run failed
            text = f"{type(exc).__name__}: {exc}".strip().splitlines()
            link.send(("error", f"flower: {text[0]}", traceback.format_exc()))
            raise


def make_server_app() -> Any:
    from flwr.serverapp import ServerApp

    app = ServerApp()
    app.main()(serve)
    return app
