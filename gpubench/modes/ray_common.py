"""What the ray and flower modes share: Ray's import, resources, a local Ray, and its reaping.

Both modes run on Ray (flower through Flower's simulation runtime), so both reserve the same
per-worker resources, give a private local Ray the same environment when no ``--ray-address``
is given, and make sure no Ray process of theirs outlives the mode.
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

from gpubench.machine.devices import Device
from gpubench.modes.base import ModeFailure, Plan

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


def _option(options: Mapping[str, Any], name: str) -> float | None:
    """A number of RunConfig.options (its validation checked its type and range)."""
    value = options.get(name)
    return None if value is None else float(value)


def worker_resources(plan: Plan, device: Device) -> Resources:
    """Reservations of one worker on ``device`` from --cpus-per-worker / --gpus-per-worker."""
    options = plan.config.options
    cpus = _option(options, "cpus_per_worker")
    gpus = _option(options, "gpus_per_worker")
    if cpus is None:
        cpus = float(len(device.cores) or 1) if not device.is_cuda else 1.0
    if gpus is None:
        gpus = 1.0 / plan.config.workers_per_device if device.is_cuda else 0.0
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
    }


def ray_worker_environment(devices: Sequence[Device]) -> dict[str, str]:
    """What a local Ray's processes need in their environment: exactly the run's GPUs, and
    this process's import path."""
    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    gpus = [d for d in devices if d.is_cuda]
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(d.visible_as or str(d.index) for d in gpus)
    return env


@contextlib.contextmanager
def local_ray_environment(devices: Sequence[Device]) -> Iterator[None]:
    """While a local Ray starts, the environment its raylet inherits, and with it every worker
    the raylet starts: exactly the run's GPUs, and this process's import path (workers import
    gpubench and a user's case the way this process does). A path given as the job's
    ``runtime_env`` instead would make Ray start a fresh worker for every actor rather than
    hand it one of those it prestarts (about 1.5 s of a core each)."""
    wanted = ray_worker_environment(devices)
    before = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def start_local_ray(ray: Any, plan: Plan, needed: Sequence[Resources]) -> None:
    cpus, gpus = local_cluster_size(plan, needed)
    with local_ray_environment(plan.devices), warnings.catch_warnings():
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


def _ended(p: Any) -> bool:
    """Whether ``p`` has exited. A zombie has: one of ours is reaped here, an orphan's is
    left to init (which may take a second or two to get to it)."""
    import psutil

    try:
        if p.status() != psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
    with contextlib.suppress(psutil.Error, OSError):
        if p.ppid() == os.getpid():
            p.wait(timeout=0)
    return True


def _wait_ended(procs: Sequence[Any], timeout_s: float) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        alive = [p for p in procs if not _ended(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def reap(procs: Sequence[Any], grace_s: float = 5.0) -> None:
    """Wait up to ``grace_s`` for ``procs`` to end after a shutdown; kill whatever is still
    there."""
    import psutil

    unique = list({p.pid: p for p in procs}.values())
    for p in _wait_ended(unique, grace_s):
        with contextlib.suppress(psutil.Error):
            p.kill()
    _wait_ended(unique, 2.0)


def describe_ray_error(exc: BaseException) -> str:
    """One line out of Ray's long error texts: the cause of a task error, else the first line."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        text = str(cause).strip().splitlines()
        return text[0] if text else type(cause).__name__
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# --- the actor --------------------------------------------------------------------------------


