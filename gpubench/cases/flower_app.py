"""A Flower app as a case: ``flower:TARGET:NAME[;OPTION=VALUE...]``.

``TARGET`` is ``path/to/app.py`` (its directory goes first on ``sys.path``, as Flower puts
an app's) or ``package.module``; ``NAME`` is a ``flwr.clientapp.ClientApp`` (Message API,
``@app.train()``; or one built from a ``client_fn``) or a ``client_fn(context)`` returning a
``Client``/``NumPyClient``. The options (``compare`` writes them from its flags) travel in the
spec so that every worker process builds exactly the same clients:

* ``num-partitions=N``: the run's clients (``--clients``);
* ``run-config=KEY=VALUE ...``: ``context.run_config``, in Flower's syntax and typing
  (``flwr run --run-config``: TOML values, so ``lr=0.1`` is a float, strings are quoted);
* ``train-config=KEY=VALUE ...``: the train message's ``config`` record;
* ``initial-model=module:NAME|path/file.py:NAME``: a callable returning the ``nn.Module``
  the server starts from (without it, a ``client_fn``'s ``get_parameters``);
* ``client-timeout=SECONDS``: a client's app that has not returned by then fails its mode.

Client ``c`` gets ``node_config = {"partition-id": c, "num-partitions": N}`` and a fresh
``Context`` (nothing in ``context.state`` survives a round: every round of gpubench starts
from a model of its own). Its train message carries the global model as Flower's server
sends it: an ``ArrayRecord`` named after the initial model's ``state_dict`` (Message API), or
``Parameters`` of NumPy arrays in that order (``client_fn``).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from gpubench.cases.contract import Case
from gpubench.cases.importing import import_attribute
from gpubench.config import ConfigError

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

FLOWER_PREFIX = "flower:"
FLOWER_MISSING = "flwr is not installed: pip install 'gpubench[flower]'"
OPTIONS = ("num-partitions", "run-config", "train-config", "initial-model", "client-timeout")
SUPERLINK_NODE = 1  # Flower's server node id


class AppError(RuntimeError):
    """A client app failed or answered something FedAvg cannot use; says what."""


@dataclass(frozen=True)
class AppSpec:
    target: str
    name: str
    num_partitions: int | None = None
    run_config: str = ""
    train_config: str = ""
    initial_model: str | None = None
    client_timeout: float | None = None

    def __str__(self) -> str:
        parts = [f"{FLOWER_PREFIX}{self.target}:{self.name}"]
        if self.num_partitions is not None:
            parts.append(f"num-partitions={self.num_partitions}")
        if self.run_config:
            parts.append(f"run-config={self.run_config}")
        if self.train_config:
            parts.append(f"train-config={self.train_config}")
        if self.initial_model:
            parts.append(f"initial-model={self.initial_model}")
        if self.client_timeout is not None:
            parts.append(f"client-timeout={self.client_timeout:g}")
        return ";".join(parts)


def parse_app_spec(spec: str) -> AppSpec:
    head, *options = spec.split(";")
    body = head[len(FLOWER_PREFIX):]
    target, _, name = body.rpartition(":")
    if not target or not name:
        raise ConfigError(
            f"--case {spec!r}: a Flower app is flower:path/to/app.py:NAME or "
            "flower:package.module:NAME"
        )
    values: dict[str, str] = {}
    for option in options:
        key, eq, value = option.partition("=")
        key = key.strip()
        if not eq or key not in OPTIONS:
            raise ConfigError(
                f"--case {spec!r}: unknown option {option.strip()!r} (options: "
                f"{', '.join(OPTIONS)}; ';' separates them)"
            )
        values[key] = value.strip()
    app = AppSpec(target, name, run_config=values.get("run-config", ""),
                  train_config=values.get("train-config", ""),
                  initial_model=values.get("initial-model") or None)
    if "num-partitions" in values:
        app = replace(app, num_partitions=_number(spec, "num-partitions", values, int))
    if "client-timeout" in values:
        app = replace(app, client_timeout=_number(spec, "client-timeout", values, float))
    return app


def _number(spec: str, key: str, values: dict[str, str], kind: type) -> Any:
    try:
        value = kind(values[key])
    except ValueError:
        value = None
    if value is None or not value > 0 or (kind is float and not math.isfinite(value)):
        raise ConfigError(f"--case {spec!r}: {key} must be a number > 0, got {values[key]!r}")
    return value


def with_app_options(
    spec: str,
    clients: int,
    run_config: str | None = None,
    train_config: str | None = None,
    initial_model: str | None = None,
    client_timeout: float | None = None,
) -> str:
    """``spec`` with the run's Flower options written into it (flags override the spec's);
    any other spec unchanged (the flags then are bad input)."""
    given = [f for f, v in (("--run-config", run_config), ("--train-config", train_config),
                            ("--initial-model", initial_model),
                            ("--client-timeout", client_timeout)) if v is not None]
    if not spec.startswith(FLOWER_PREFIX):
        if given:
            raise ConfigError(f"{given[0]} applies to a Flower app case (--case flower:...)")
        return spec
    for flag, value in (("--run-config", run_config), ("--train-config", train_config),
                        ("--initial-model", initial_model)):
        if value is not None and ";" in value:
            raise ConfigError(f"{flag} {value!r}: ';' cannot appear in a value")
    app = replace(parse_app_spec(spec), num_partitions=clients)
    if run_config is not None:
        app = replace(app, run_config=run_config.strip())
    if train_config is not None:
        app = replace(app, train_config=train_config.strip())
    if initial_model is not None:
        app = replace(app, initial_model=initial_model.strip())
    if client_timeout is not None:
        if not client_timeout > 0:
            raise ConfigError(f"--client-timeout must be > 0 seconds, got {client_timeout:g}")
        app = replace(app, client_timeout=client_timeout)
    return str(app)


def parse_flower_config(text: str, flag: str) -> dict[str, Any]:
    """``KEY=VALUE ...`` typed as ``flwr run --run-config`` types it (TOML values)."""
    if not text:
        return {}
    from flwr.common.config import parse_config_args

    try:
        return dict(parse_config_args([text]))
    except Exception as exc:  # Flower raises click's exception for bad syntax
        msg = getattr(exc, "message", None) or str(exc)
        raise ConfigError(f"{flag} {text!r}: {msg}") from None


# --- calling the app ---------------------------------------------------------------------------


class FlowerClients:
    """Builds client ``c``'s Context and train message and reads back its reply."""

    def __init__(self, spec: AppSpec, text: str, obj: Any) -> None:
        from flwr.clientapp import ClientApp

        self.spec = spec
        self.text = text
        self.obj = obj
        if isinstance(obj, ClientApp):
            # A ClientApp built from a client_fn answers the legacy message (fitins.*).
            self.kind = "legacy-app" if getattr(obj, "_call", None) is not None else "message"
        elif callable(obj) and _one_argument(obj):
            self.kind = "client_fn"
        else:
            raise ConfigError(
                f"--case {text!r}: {spec.name} is neither a Flower ClientApp nor a "
                "client_fn(context) returning a Client or NumPyClient"
            )
        self.run_config = parse_flower_config(spec.run_config, "--run-config")
        self.train_config = parse_flower_config(spec.train_config, "--train-config")
        self.timeout_s = spec.client_timeout

    @property
    def num_partitions(self) -> int:
        if self.spec.num_partitions is None:
            raise ConfigError(f"--case {self.text!r}: num-partitions is not set (--clients)")
        return self.spec.num_partitions

    def context(self, client: int) -> Any:
        from flwr.app import Context, RecordDict

        node_config: dict[str, bool | float | int | str] = {
            "partition-id": client, "num-partitions": self.num_partitions,
        }
        return Context(run_id=1, node_id=client + 2, node_config=node_config,
                       state=RecordDict(), run_config=dict(self.run_config))

    def _message(self, client: int, content: Any, message_type: str) -> Any:
        from flwr.app import DEFAULT_TTL, Message, Metadata

        metadata = Metadata(
            run_id=1, message_id=f"gpubench-{client}-{time.monotonic_ns()}",
            src_node_id=SUPERLINK_NODE, dst_node_id=client + 2, reply_to_message_id="",
            group_id="", created_at=time.time(), ttl=DEFAULT_TTL, message_type=message_type,
        )
        # Metadata of our own, not Flower's process-wide TaskIdentity (which Flower's
        # actors set for themselves in the flower mode).
        return Message(content=content, metadata=metadata)  # type: ignore[call-overload]

    def prepare(self, client: int, names: Sequence[str], arrays: Sequence[np.ndarray]) -> Any:
        """What Flower's server would send client ``client``: (message or client input, context)."""
        from flwr.app import Array, ArrayRecord, ConfigRecord, MessageType, RecordDict

        context = self.context(client)
        if self.kind == "message":
            record = ArrayRecord({n: Array(a) for n, a in zip(names, arrays, strict=True)})
            content = RecordDict({"arrays": record, "config": ConfigRecord(self.train_config)})
            return self._message(client, content, MessageType.TRAIN), context
        from flwr.common import FitIns, ndarrays_to_parameters

        fitins = FitIns(ndarrays_to_parameters(list(arrays)), dict(self.train_config))
        if self.kind == "legacy-app":
            from flwr.compat.common.recorddict_compat import fitins_to_recorddict

            content = fitins_to_recorddict(fitins, keep_input=True)
            return self._message(client, content, MessageType.TRAIN), context
        return fitins, context

    def call(self, prepared: Any) -> tuple[list[np.ndarray], int]:
        """Train: the app's arrays and num-examples (AppError: what is wrong with its reply)."""
        first, context = prepared
        if self.kind == "client_fn":
            return self._call_client_fn(first, context)
        reply = self.obj(first, context)
        from flwr.app import Message

        if not isinstance(reply, Message):
            raise AppError(f"returned {type(reply).__name__}, not a Flower Message")
        if reply.has_error():
            raise AppError(f"replied with an error: {reply.error.reason}")
        if self.kind == "legacy-app":
            from flwr.common import parameters_to_ndarrays
            from flwr.compat.common.recorddict_compat import recorddict_to_fitres

            try:
                res = recorddict_to_fitres(reply.content, keep_input=False)
            except Exception as exc:
                raise AppError(f"sent a reply that is not a fit result: {exc}") from None
            return parameters_to_ndarrays(res.parameters), _examples(res.num_examples)
        return _read_reply(reply.content)

    def _call_client_fn(self, fitins: Any, context: Any) -> tuple[list[np.ndarray], int]:
        from flwr.client import Client, NumPyClient
        from flwr.common import parameters_to_ndarrays

        client = self.obj(context)
        if isinstance(client, NumPyClient):
            out = client.fit(parameters_to_ndarrays(fitins.parameters), dict(fitins.config))
            if not isinstance(out, tuple) or len(out) != 3:
                got = type(out).__name__ + (f" of {len(out)}" if isinstance(out, tuple) else "")
                raise AppError(
                    f"returned a {got} from NumPyClient.fit, not (arrays, num_examples, metrics)"
                )
            return [_array(a) for a in out[0]], _examples(out[1])
        if isinstance(client, Client):
            res = client.fit(fitins)
            return parameters_to_ndarrays(res.parameters), _examples(res.num_examples)
        raise AppError(
            f"returned {type(client).__name__} from client_fn, not a Flower Client or NumPyClient"
        )

    def initial_arrays(self, seed_context: int = 0) -> list[np.ndarray]:
        """Client ``seed_context``'s ``get_parameters`` (a client_fn or a ClientApp of one)."""
        if self.kind == "message":
            raise ConfigError(
                f"--case {self.text!r}: a Message-API ClientApp gets its model from the "
                "ServerApp: give --initial-model module:NAME or path/file.py:NAME, the "
                "callable the ServerApp builds its model with (e.g. task.py:Net)"
            )
        from flwr.common import GetParametersIns, parameters_to_ndarrays

        context = self.context(seed_context)
        if self.kind == "legacy-app":
            from flwr.common.constant import MessageTypeLegacy
            from flwr.compat.common.recorddict_compat import (
                getparametersins_to_recorddict,
                recorddict_to_getparametersres,
            )

            content = getparametersins_to_recorddict(GetParametersIns({}))
            msg = self._message(seed_context, content, MessageTypeLegacy.GET_PARAMETERS)
            reply = self.obj(msg, context)
            res = recorddict_to_getparametersres(reply.content, keep_input=False)
            return parameters_to_ndarrays(res.parameters)
        from flwr.client import Client, NumPyClient

        client = self.obj(context)
        if isinstance(client, NumPyClient):
            return [_array(a) for a in client.get_parameters(config={})]
        if isinstance(client, Client):
            return parameters_to_ndarrays(client.get_parameters(GetParametersIns({})).parameters)
        raise ConfigError(
            f"--case {self.text!r}: client_fn returned {type(client).__name__}, not a Flower "
            "Client or NumPyClient"
        )


def _one_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(params) == 1


def _array(a: Any) -> np.ndarray:
    import numpy as np

    if hasattr(a, "detach"):  # a torch tensor where NumPy arrays were due
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _examples(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise AppError(f"reported num-examples {value!r}, not a whole number")
    if int(value) <= 0:
        raise AppError(f"reported num-examples {int(value)}, FedAvg needs > 0")
    return int(value)


def _read_reply(content: Any) -> tuple[list[np.ndarray], int]:
    """The one ArrayRecord and the ``num-examples`` metric of a Message-API train reply (what
    Flower's FedAvg aggregates: ``weighted_by_key="num-examples"``)."""
    records = list(content.array_records.values())
    if len(records) != 1:
        raise AppError(f"replied with {len(records)} ArrayRecords, FedAvg needs exactly one")
    metrics = [m for m in content.metric_records.values() if "num-examples" in m]
    if not metrics:
        raise AppError("replied with no 'num-examples' in a MetricRecord (FedAvg's weight)")
    return [a.numpy() for a in records[0].values()], _examples(metrics[0]["num-examples"])


def check_arrays(arrays: Sequence[np.ndarray], shapes: Sequence[tuple[int, ...]]) -> None:
    """AppError unless ``arrays`` have the global model's shapes, in its order."""
    got = [tuple(getattr(a, "shape", ())) for a in arrays]
    if len(got) != len(shapes):
        raise AppError(f"returned {len(got)} arrays, the global model has {len(shapes)}")
    for i, (g, want) in enumerate(zip(got, shapes, strict=True)):
        if g != tuple(want):
            raise AppError(
                f"returned array {i} of shape {g or '()'}, the global model's is "
                f"{tuple(want) or '()'}"
            )


# --- the case ---------------------------------------------------------------------------------


def arrays_model(arrays: Sequence[np.ndarray]) -> nn.Module:
    """An nn.Module whose state is ``arrays`` (buffers, in order): a client's get_parameters
    as the global model."""
    import torch
    from torch import nn

    model = nn.Module()
    for i, a in enumerate(arrays):
        model.register_buffer(f"array{i}", torch.from_numpy(_array(a).copy()))
    return model


_CASES: dict[str, Case] = {}


def load_flower_case(text: str) -> Case:
    """The case of a ``flower:`` spec (once per process)."""
    case = _CASES.get(text)
    if case is not None:
        return case
    import importlib.util

    if importlib.util.find_spec("flwr") is None:
        raise ConfigError(FLOWER_MISSING)
    spec = parse_app_spec(text)
    obj = import_attribute(f"{spec.target}:{spec.name}", text, add_dir=True)
    clients = FlowerClients(spec, text, obj)
    if spec.initial_model:
        build = import_attribute(spec.initial_model, spec.initial_model, "--initial-model",
                                 add_dir=True)
        if not callable(build):
            raise ConfigError(f"--initial-model {spec.initial_model!r}: not a callable")
        build_model: Callable[[], nn.Module] = _checked_builder(build, spec.initial_model)
    else:
        if clients.kind == "message":
            clients.initial_arrays()  # a Message-API app has none: say so before any work
        build_model = lambda: arrays_model(clients.initial_arrays())  # noqa: E731
    case = Case(
        text, build_model, (), 0,
        f"Flower app {spec.name} of {spec.target} ({clients.kind})", app=clients,
    )
    _CASES[text] = case
    return case


def _checked_builder(build: Callable[[], Any], where: str) -> Callable[[], nn.Module]:
    def built() -> nn.Module:
        from torch import nn

        model = build()
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"--initial-model {where!r} returned {type(model).__name__}, not an nn.Module"
            )
        return model

    return built
