"""Flower's side of the flower mode: the ClientApp that runs in Flower's Ray actors and the
ServerApp's strategy and driver process, which the parent drives round by round. See
:mod:`gpubench.modes.flower` for how it is timed.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import signal
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import torch

from gpubench.config import TrainConfig
from gpubench.machine.devices import Device, device_of_visible, visible_entry
from gpubench.modes.base import process_rss
from gpubench.modes.ray_common import local_ray_environment
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
    backend_config: dict[str, Any]


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


# --- the ServerApp side (runs in the driver process) ------------------------------------------


class _Stop(Exception):
    """The parent asked the driver to stop (or went away)."""


def make_strategy(setup: FlowerSetup, blob: bytes, link: _DriverLink) -> Any:
    from flwr.app import Array, ArrayRecord
    from flwr.serverapp.strategy import FedAvg

    clients = len(setup.sizes)

    class MeasuredFedAvg(FedAvg):  # type: ignore[misc]
        """Flower's FedAvg, driven round by round by the parent."""

        def configure_train(self, server_round: int, arrays: Any, config: Any, grid: Any) -> Any:
            if server_round == 1:
                link.first_configure = time.perf_counter()
            else:
                link.wait_for_round()
                flat = link.global_state.numpy()
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


class _DriverLink:
    """The driver's end of the pipe and the shared buffers."""

    def __init__(
        self, conn: Connection, setup: FlowerSetup, global_state: torch.Tensor,
        aggregate: torch.Tensor,
    ) -> None:
        self.conn = conn
        self.setup = setup
        self.global_state = global_state
        self.aggregate = aggregate
        self.first_configure: float | None = None
        self.t_import = 0.0
        self.t_call = 0.0
        self.workers: dict[int, int] = {}  # actor pid -> worker number

    def send(self, msg: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(msg)

    def wait_for_round(self) -> None:
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            raise _Stop("the parent went away") from None
        if msg[0] != "round":
            raise _Stop("stopped by the parent")

    def report(self, server_round: int, arrays: Any, metrics: list[Any]) -> None:
        for m in sorted(metrics, key=lambda m: int(m["pid"])):
            self.workers.setdefault(int(m["pid"]), len(self.workers))
        if server_round == 1:
            now = time.perf_counter()
            actors = {
                int(m["pid"]): self._device(int(m["pid"]), int(m["gpu"])) for m in metrics
            }
            startup = {
                "import_s": self.t_import,
                "to_first_configure_s": (self.first_configure or now) - self.t_call,
                "to_ready_s": now - self.t_call,
            }
            self.send(("ready", os.getpid(), actors, startup))
            return
        self.aggregate.copy_(_flat(arrays))
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
            ))
            fingerprints[int(m["client"])] = [float(v) for v in m["fingerprint"]]
            memory[worker] = WorkerMemory(worker, device, pid, None, None, int(m["rss"]) or None)
        self.send(("done", timings, [memory[k] for k in sorted(memory)], fingerprints))

    def _device(self, pid: int, position: int) -> str:
        """The device an actor reported (its place in the run's devices); on CPU slots, which
        Flower's actors are not pinned to, actor k counts as device k mod n."""
        devices = self.setup.devices
        if 0 <= position < len(devices):
            return devices[position].id
        return devices[self.workers.setdefault(pid, len(self.workers)) % len(devices)].id


def driver_main(
    setup: FlowerSetup, global_state: torch.Tensor, aggregate: torch.Tensor, conn: Connection
) -> None:
    """The driver process: run the whole Flower simulation, one round per parent request."""
    from gpubench.modes.pool import die_with_parent, end_worker

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
    link = _DriverLink(conn, setup, global_state, aggregate)
    try:
        t0 = time.perf_counter()
        import logging

        from flwr.app import Array, ArrayRecord, Context
        from flwr.serverapp import Grid, ServerApp
        from flwr.simulation import run_simulation

        logging.getLogger("flwr").setLevel(logging.CRITICAL)
        link.t_import = time.perf_counter() - t0
        blob = pickle.dumps(setup)
        strategy = make_strategy(setup, blob, link)
        server_app = ServerApp()

        @server_app.main()
        def _main(grid: Grid, context: Context) -> None:
            from gpubench.cases import load_case
            from gpubench.train.fl import initial_global_state, state_tensors

            case = load_case(setup.case)
            model = case.build_model()
            initial = initial_global_state(case, setup.train.seed)
            names = list(model.state_dict().keys())
            parts = torch.split(initial, [t.numel() for t in state_tensors(model)])
            record = ArrayRecord(
                {n: Array(p.reshape(t.shape).numpy().copy())
                 for n, p, t in zip(names, parts, state_tensors(model), strict=True)}
            )
            try:
                strategy.start(
                    grid=grid, initial_arrays=record, num_rounds=setup.server_rounds,
                    timeout=setup.timeout_s or 3600.0,
                )
            except _Stop:
                # Stopped by the parent, or a failed round already reported: the ServerApp
                # ends as a finished one does. (One that raises makes run_simulation wait 3 s
                # for the context such an app never sends.)
                pass

        link.t_call = time.perf_counter()
        init_args = setup.backend_config["init_args"]
        local = init_args.get("address") == "local"
        environment = local_ray_environment(setup.devices) if local else contextlib.nullcontext()
        with environment, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Ray's FutureWarnings would go to the terminal
            if local:
                # The local Ray starts here, as the ray mode starts its own: Flower starts one
                # only when none runs, and would give its job a runtime_env, so that every
                # actor got a fresh worker, not one that Ray prestarts. Flower stops it.
                import ray

                ray.init(**init_args)
            run_simulation(
                server_app=server_app,
                client_app=make_client_app(),
                num_supernodes=len(setup.sizes),
                backend_config=setup.backend_config,
            )
    except _Stop:
        pass
    except BaseException as exc:  # report, then exit: the parent fails the mode
        text = f"{type(exc).__name__}: {exc}".strip().splitlines()
        if isinstance(exc, SystemExit):
            text = [f"Flower exited with code {exc.code}"]
        link.send(("error", f"flower: {text[0] if text else type(exc).__name__}",
                   traceback.format_exc()))
        return
    link.send(("finished",))
    # Flower has stopped its actors and its Ray: end without the interpreter's teardown of
    # flwr, ray and torch (seconds of a core), as a pool's worker does.
    end_worker(None)


