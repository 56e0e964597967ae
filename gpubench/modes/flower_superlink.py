"""A private local SuperLink for the flower mode, and the ``flwr`` CLI against it.

``flwr run`` starts a local SuperLink (simulation runtime) only when none answers on its
ports, and reuses whatever does: a SuperLink left running by another checkout or by another
gpubench run would silently take the run. So every flower mode starts its own: its own
``FLWR_HOME`` (config, ``state.db``, installed apps, logs) in a temporary directory, its own
free loopback ports, and its own ``flower-superlink`` process, a child of gpubench that is
stopped (with its SuperExec, the simulation, and the simulation's Ray) when the mode closes,
or when gpubench dies. Runs are judged by their final status (``flwr list``), not by the exit
code of ``flwr run``, which only submits.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpubench.modes.base import ModeFailure

# The first Flower whose ``flwr run`` runs a local simulation against a local SuperLink
# started on demand (with ``--federation-config``).
FIRST_FLWR_RUN_SIMULATION = (1, 27)
FINISHED = "finished:"
# Offline, quiet and without a per-run ``uv sync`` of the app's dependencies: the app runs
# in gpubench's own environment.
QUIET_FLOWER = {
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_TELEMETRY_ENABLED": "0",
}
APP_MODULE = "gpubench_flower_app"
LINK_KEYS = ("gpubench-link", "gpubench-key")


def flwr_version() -> str:
    from importlib.metadata import version

    return version("flwr")


def version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit()) or "0"
        parts.append(int(digits))
        if not part.isdigit():
            break
    return tuple(parts)


def check_flwr_version(installed: str) -> None:
    """One line, not a traceback, for a Flower whose ``flwr run`` cannot simulate locally."""
    if version_tuple(installed) < FIRST_FLWR_RUN_SIMULATION:
        first = ".".join(map(str, FIRST_FLWR_RUN_SIMULATION))
        raise ModeFailure(
            f"flwr {installed} cannot run the flower mode: it runs through `flwr run` against "
            f"a local SuperLink, which flwr >= {first} has: pip install -U 'gpubench[flower]'"
        )


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free now (held together, so never the same one)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass(frozen=True)
class SuperLinkPlace:
    """Where a private SuperLink lives: its FLWR_HOME and its ports (the Control API is served
    on the HTTP port; ``flwr`` is told both, so that it never probes Flower's defaults)."""

    home: Path
    http_port: int
    control_port: int

    @classmethod
    def allocate(cls, root: Path) -> SuperLinkPlace:
        http_port, control_port = free_ports(2)
        home = root / "flwr-home"
        home.mkdir(parents=True, exist_ok=True)
        return cls(home, http_port, control_port)

    def environment(self) -> dict[str, str]:
        """What ``flower-superlink`` and every ``flwr`` command of this place run with (the
        SuperLink starts ``flower-superexec`` from PATH: this environment's first)."""
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return {
            "PATH": path,
            "FLWR_HOME": str(self.home),
            "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(self.http_port),
            "FLWR_LOCAL_CONTROL_API_PORT": str(self.control_port),
            **QUIET_FLOWER,
        }

    def superlink_command(self) -> list[str]:
        """``flower-superlink`` as ``flwr run`` starts a local one, on this place's ports."""
        return [
            _executable("flower-superlink"), "--insecure", "--simulation",
            "--isolation", "subprocess", "--host", "127.0.0.1", "--port", str(self.http_port),
            "--database", str(self.home / "local-superlink" / "state.db"),
            "--log-file", str(self.home / "local-superlink" / "superlink.log"),
        ]


def _executable(name: str) -> str:
    """A Flower command of this interpreter's environment (else the one on PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ModeFailure(f"`{name}` is not installed: pip install 'gpubench[flower]'")
    return found


def toml_value(value: Any) -> str:
    """A value as ``--run-config`` / ``--federation-config`` parse it (TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string


def config_arg(values: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={toml_value(v)}" for k, v in values.items())


APP_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "gpubench-flower"
version = "1.0.0"
description = "gpubench's flower mode: a measured ServerApp and the case's ClientApp"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "gpubench"

[tool.flwr.app.components]
serverapp = "{module}:server"
clientapp = "{module}:client"

[tool.flwr.app.config]
{keys}
"""

APP_SOURCE = '''\
"""gpubench's flower mode: its measured ServerApp and the ClientApp that runs the case."""

from gpubench.modes.flower_engine import make_client_app, make_server_app

client = make_client_app()
server = make_server_app()
'''


def write_app(directory: Path) -> Path:
    """The Flower App ``flwr run`` submits (the ServerApp finds gpubench through the
    SuperLink's environment)."""
    directory.mkdir(parents=True, exist_ok=True)
    keys = "\n".join(f'{k} = ""' for k in LINK_KEYS)
    (directory / "pyproject.toml").write_text(APP_PYPROJECT.format(module=APP_MODULE, keys=keys))
    (directory / f"{APP_MODULE}.py").write_text(APP_SOURCE)
    return directory


class LocalSuperLink:
    """One private ``flower-superlink`` and the ``flwr`` commands that drive it."""

    def __init__(self, place: SuperLinkPlace, environment: Mapping[str, str]) -> None:
        self.place = place
        self.env = {**os.environ, **environment, **place.environment()}
        self.proc: subprocess.Popen[bytes] | None = None
        self.known: dict[int, Any] = {}  # every process seen under the SuperLink

    def start(self, timeout_s: float = 60.0) -> None:
        from gpubench.modes.pool import die_with_parent

        (self.place.home / "local-superlink").mkdir(parents=True, exist_ok=True)
        log = open(self.place.home / "superlink.out", "wb")  # noqa: SIM115
        with log:
            # A session of its own: a terminal's Ctrl-C is gpubench's to handle, and the
            # SuperLink gets SIGTERM if gpubench dies.
            self.proc = subprocess.Popen(
                self.place.superlink_command(), env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509
            )
        deadline = time.monotonic() + timeout_s
        while not self._healthy():
            if self.proc.poll() is not None:
                raise ModeFailure(
                    f"flower-superlink exited with code {self.proc.returncode}: "
                    f"{self._tail(self.place.home / 'superlink.out')}"
                )
            if time.monotonic() > deadline:
                raise ModeFailure(f"flower-superlink did not answer within {timeout_s:g} s")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.place.http_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=0.5) as response:  # noqa: S310
                return bool(200 <= response.status < 300)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def flwr(self, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        """A ``flwr`` command against this SuperLink (its output captured, never shown)."""
        return subprocess.run(
            [_executable("flwr"), *args], env=self.env, capture_output=True, text=True,
            timeout=timeout_s, stdin=subprocess.DEVNULL, check=False,
        )

    def submit(self, app: Path, federation: Mapping[str, Any], run_config: Mapping[str, Any]) -> int:
        """``flwr run APP local --federation-config ... --run-config ... --format json``."""
        done = self.flwr(
            "run", str(app), "local", "--federation-config", config_arg(federation),
            "--run-config", config_arg(run_config), "--format", "json",
        )
        answer = _json(done.stdout)
        run_id = answer.get("run-id") if answer.get("success") else None
        if done.returncode != 0 or run_id is None:
            why = answer.get("error-message") or _last_line(done.stderr or done.stdout)
            raise ModeFailure(f"`flwr run` did not start the run: {why}")
        return int(run_id)

    def status(self, run_id: int) -> str | None:
        """The run's status (``finished:completed``, ``finished:failed``, ``running`` ...)."""
        done = self.flwr("list", "--run-id", str(run_id), "--format", "json", timeout_s=60.0)
        runs = _json(done.stdout).get("runs") or []
        return str(runs[0].get("status")) if runs else None

    def wait_finished(self, run_id: int, timeout_s: float) -> str | None:
        """The run's final status, polled rarely (each ``flwr list`` is a process)."""
        deadline = time.monotonic() + timeout_s
        status = None
        while self.alive():
            status = self.status(run_id)
            if (status or "").startswith(FINISHED) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        return status

    def run_log(self, run_id: int) -> str:
        done = self.flwr("log", str(run_id), "--show", timeout_s=60.0)
        return (done.stdout or "") + (done.stderr or "")

    def descendants(self) -> list[Any]:
        """Every process under the SuperLink now or seen before (SuperExec, the simulation,
        its Ray): one that was reparented after its parent ended is still ours to end."""
        import psutil

        if self.proc is not None:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(self.proc.pid)
                for p in [root, *root.children(recursive=True)]:
                    self.known.setdefault(p.pid, p)
        return [p for p in self.known.values() if _running(p)]

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM to the SuperLink (it stops its SuperExec and run), then whatever is left of
        what ran under it is killed."""
        from gpubench.modes.ray_common import reap

        procs = self.descendants()
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace_s)
        reap(procs, grace_s=1.0)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    @staticmethod
    def _tail(path: Path) -> str:
        try:
            return _last_line(path.read_text(errors="replace"))
        except OSError:
            return "no output"


def _running(p: Any) -> bool:
    import psutil

    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _json(text: str) -> dict[str, Any]:
    start = text.find("{")
    if start < 0:
        return {}
    try:
        value = json.loads(text[start:])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def last_lines(text: str, count: int) -> Sequence[str]:
    return [line for line in (text or "").splitlines() if line.strip()][-count:]
