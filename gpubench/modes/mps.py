"""A private CUDA MPS control daemon for the process modes.

Without MPS, the CUDA contexts of several processes on one GPU take turns (time-slicing); with
MPS their kernels run at once. gpubench starts its *own* control daemon, as the current user,
with private ``CUDA_MPS_PIPE_DIRECTORY`` and ``CUDA_MPS_LOG_DIRECTORY`` under a temporary
directory, so that only the workers it gives that environment become MPS clients. It never
changes the GPU's compute mode or any other setting.

::

    with mps_daemon(devices) as mps:             # refuses with MpsUnavailable / MpsNotApplicable
        env = mps.worker_environment(device)     # into each worker's environment before CUDA
        ...                                      # spawn the workers, let them create contexts
        mps.check_attached(pool.worker_pids)     # MpsAttachError: a worker is time-sliced
    # the daemon has quit and its directories are gone: also after an exception, Ctrl-C, and
    # SIGTERM under the command line (gpubench.cli turns it into an interrupt for every command)

A run killed outright (SIGKILL) leaves its daemon behind; the next start finds its directory
(its owner pid is dead), quits that daemon and removes the directory.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from gpubench.machine.devices import Device

CONTROL = "nvidia-cuda-mps-control"
MPS_PROCESS_NAMES = ("nvidia-cuda-mps-control", "nvidia-cuda-mps-server")
PREFIX = "gpubench-mps-"
PID_FILE = "nvidia-cuda-mps-control.pid"  # the daemon writes it into its pipe directory
OWNER_FILE = "owner"  # our pid: a directory whose owner is dead is stale
SOCKET_PATH_MAX = 100  # a Unix socket path has ~108 bytes; the pipe dir holds the sockets
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
INSTALL_HINT = (
    "it ships with the NVIDIA driver (packages nvidia-utils / nvidia-compute-utils); in a "
    "container, mount the driver's utilities (NVIDIA_DRIVER_CAPABILITIES=compute,utility)"
)


class MpsUnavailable(RuntimeError):
    """MPS cannot be used here; the message says why."""


class MpsNotApplicable(MpsUnavailable):
    """MPS makes no sense on these devices (CPU slots)."""


class MpsBusy(MpsNotApplicable):
    """Another MPS daemon (another user's, or another run's) serves the GPUs already."""


class MpsAttachError(RuntimeError):
    """A worker did not become an MPS client: its kernels are time-sliced, not concurrent."""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def find_mps_processes(under: Path | None = None) -> list[str]:
    """Running MPS control daemons and servers, as ``"name (pid)"``; with ``under``, only
    those whose pipe directory lies under it (tests)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        name = proc.info.get("name") or ""
        argv = proc.info.get("cmdline") or []
        names = {name, *(os.path.basename(a) for a in argv[:2])}
        # The kernel keeps 15 characters of a command's name: "nvidia-cuda-mps".
        hit = next((n for n in MPS_PROCESS_NAMES if n in names or n[:15] == name), None)
        if hit is None:
            continue
        if under is not None:
            try:
                pipe = proc.environ().get("CUDA_MPS_PIPE_DIRECTORY", "")
            except psutil.Error:
                continue
            if not Path(pipe).is_relative_to(under):
                continue
        try:
            owner = proc.username()
        except (psutil.Error, KeyError):
            owner = "another user"
        found.append(f"{hit} ({proc.pid}, {owner})")
    return found


def _base_dir(base: Path | None) -> Path:
    if base is not None:
        return base
    tmp = Path(tempfile.gettempdir())
    # The pipe directory must leave room for the socket names under a long $TMPDIR.
    return tmp if len(str(tmp)) + 40 < SOCKET_PATH_MAX else Path("/tmp")


class MpsDaemon:
    """One private MPS control daemon for ``devices`` (CUDA GPUs with known UUIDs).

    ``find_running`` lists MPS processes already running (refused); ``base_dir`` is where the
    private directory goes (default: the temporary directory).
    """

    def __init__(
        self,
        devices: Sequence[Device],
        *,
        base_dir: Path | None = None,
        find_running: Callable[[], list[str]] = find_mps_processes,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        cpu = [d.id for d in devices if not d.is_cuda]
        if cpu or not devices:
            raise MpsNotApplicable(
                "MPS not applicable: it shares a CUDA GPU between processes, and "
                f"{', '.join(cpu) or 'no device'} {'is a CPU slot' if len(cpu) == 1 else 'are CPU slots'}"
            )
        no_uuid = [d.id for d in devices if not d.uuid]
        if no_uuid:
            raise MpsUnavailable(
                f"MPS not used: no GPU UUID for {', '.join(no_uuid)}; the MPS server renumbers "
                "GPUs, so gpubench binds its clients by UUID only"
            )
        self.devices = {d.id: d for d in devices}
        self.base_dir = _base_dir(base_dir)
        self.root: Path | None = None
        self.environment: dict[str, str] = {}
        self._find_running = find_running
        self._start_timeout_s = start_timeout_s
        self._binary: str | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> dict[str, str]:
        """Start the daemon; returns the MPS variables every client needs."""
        if self.root is not None:
            raise RuntimeError("MPS daemon already started")
        reap_stale(self.base_dir)
        self._binary = shutil.which(CONTROL)
        if self._binary is None:
            raise MpsUnavailable(f"MPS not available: {CONTROL} not found on PATH ({INSTALL_HINT})")
        running = self._find_running()
        if running:
            raise MpsBusy(
                f"MPS not applicable here: another MPS server is already running "
                f"({', '.join(running)}); gpubench starts its own and does not share a GPU "
                f"with another (its owner can stop it with `echo quit | {CONTROL}`)"
            )
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=self.base_dir))
        (self.root / OWNER_FILE).write_text(f"{os.getpid()}\n")
        pipe, log = self.root / "pipe", self.root / "log"
        pipe.mkdir()
        log.mkdir()
        self.environment = {"CUDA_MPS_PIPE_DIRECTORY": str(pipe), "CUDA_MPS_LOG_DIRECTORY": str(log)}
        _live.add(self)
        try:
            self._launch()
        except BaseException:
            self.stop()
            raise
        return dict(self.environment)

    def _launch(self) -> None:
        assert self.root is not None and self._binary is not None
        env = {**os.environ, **self.environment, "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
               "CUDA_VISIBLE_DEVICES": ",".join(d.uuid or "" for d in self.devices.values())}
        out = self.root / "log" / "gpubench-start.txt"
        # A file, not a pipe: the daemon keeps the descriptors it inherits open.
        with out.open("w") as sink:
            rc = subprocess.call([self._binary, "-d"], env=env, stdin=subprocess.DEVNULL,
                                 stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        if rc != 0:
            text = out.read_text(errors="replace").strip().splitlines()
            raise MpsUnavailable(
                f"MPS not available: `{CONTROL} -d` exited with status {rc}"
                + (f": {text[-1]}" if text else "")
            )
        deadline = time.monotonic() + self._start_timeout_s
        while self.control("get_server_list")[0] != 0:
            if time.monotonic() > deadline:
                raise MpsUnavailable(
                    f"MPS not available: the control daemon did not answer within "
                    f"{self._start_timeout_s:g} s{self._log_tail()}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """Quit the daemon (and its servers) and remove the private directories."""
        root, self.root = self.root, None
        _live.discard(self)
        if root is not None:
            _quit(root, self._binary or shutil.which(CONTROL))

    def __enter__(self) -> MpsDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- talking to it ---------------------------------------------------------------------

    def control(self, *commands: str) -> tuple[int, str]:
        """Send commands to the daemon; (exit status, what it printed)."""
        if self.root is None or self._binary is None:
            return 1, ""
        return _control(self._binary, self.environment, commands)

    def worker_environment(self, device: Device) -> dict[str, str]:
        """What a worker on ``device`` needs in its environment before CUDA initialises: the
        private pipe and log directories and its GPU by UUID (the MPS server renumbers GPUs,
        so an index would name another GPU)."""
        if device.id not in self.devices:
            raise ValueError(f"{device.id} is not one of this MPS daemon's GPUs")
        return {**self.environment, "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
                "CUDA_VISIBLE_DEVICES": device.uuid or ""}

    def servers(self) -> list[int] | None:
        rc, out = self.control("get_server_list")
        return _pids(out) if rc == 0 else None

    def clients(self) -> set[int] | None:
        """Pids of every MPS client of this daemon's servers; None if the daemon cannot say."""
        servers = self.servers()
        if servers is None:
            return None
        clients: set[int] = set()
        for server in servers:
            rc, out = self.control(f"get_client_list {server}")
            if rc != 0:
                return None
            clients.update(_pids(out))
        return clients

    def check_attached(self, pids: Mapping[int, str]) -> None:
        """Raise :class:`MpsAttachError` unless every worker (pid -> device id) is a client of
        this daemon's servers (asked from the daemon; from NVML where it cannot say)."""
        clients = self.clients()
        if clients is None:
            clients = self._nvml_clients(set(pids.values()))
        missing = sorted(pid for pid in pids if pid not in clients)
        if missing:
            named = ", ".join(f"{pid} on {pids[pid]}" for pid in missing)
            raise MpsAttachError(
                f"MPS: worker {'process' if len(missing) == 1 else 'processes'} {named} did "
                "not attach to the MPS server and fell back to time-slicing"
                f"{self._log_tail()}"
            )

    def _nvml_clients(self, device_ids: set[str]) -> set[int]:
        from gpubench.monitor import nvml

        clients: set[int] = set()
        for dev_id in sorted(device_ids):
            try:
                kinds = nvml.process_kinds(self.devices[dev_id])
            except (LookupError, KeyError) as exc:
                raise MpsAttachError(
                    f"MPS: cannot tell whether the workers attached (the daemon gave no client "
                    f"list, and {exc})"
                ) from None
            clients.update(pid for pid, kind in kinds.items() if kind == "mps")
        return clients

    def _log_tail(self) -> str:
        """The last line of the MPS logs, for a failure's reason."""
        if self.root is None:
            return ""
        for name in ("server.log", "control.log"):
            path = self.root / "log" / name
            with contextlib.suppress(OSError):
                lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
                if lines:
                    return f" (MPS {name}: {lines[-1].strip()})"
        return ""


def _pids(text: str) -> list[int]:
    return [int(w) for w in text.split() if w.isdigit()]


def _control(binary: str, environment: Mapping[str, str], commands: Sequence[str]) -> tuple[int, str]:
    env = {**os.environ, **environment}
    try:
        done = subprocess.run([binary], input="".join(f"{c}\n" for c in commands), env=env,
                              capture_output=True, text=True, timeout=STOP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return 1, ""
    return done.returncode, done.stdout


def _quit(root: Path, binary: str | None) -> None:
    """Quit the daemon whose directory is ``root``, make sure it and its servers are gone
    (they are this user's, started by gpubench), and remove ``root``."""
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(root / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(root / "log")}
    daemon = None
    with contextlib.suppress(OSError, ValueError):
        daemon = int((root / "pipe" / PID_FILE).read_text().strip())
    ours = []
    if binary is not None and daemon is not None and _alive(daemon):
        rc, out = _control(binary, env, ["get_server_list"])
        ours = _pids(out) if rc == 0 else []
        _control(binary, env, ["quit"])
    left = [p for p in [daemon, *ours] if p is not None]
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(_alive(p) for p in left) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in left:
        _kill_own(pid)
    shutil.rmtree(root, ignore_errors=True)


def _kill_own(pid: int) -> None:
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        if proc.uids().real != os.getuid() or proc.status() == psutil.STATUS_ZOMBIE:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S / 2)
        except psutil.TimeoutExpired:
            proc.kill()


def reap_stale(base: Path) -> list[Path]:
    """Quit the daemons of gpubench runs that died without stopping theirs; returns the
    directories removed."""
    removed: list[Path] = []
    if not base.is_dir():
        return removed
    for root in base.glob(f"{PREFIX}*"):
        try:
            if root.stat().st_uid != os.getuid():
                continue
            owner = int((root / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        if owner != os.getpid() and not _alive(owner):
            _quit(root, shutil.which(CONTROL))
            removed.append(root)
    return removed


PLAIN_PREFIX = f"{PREFIX}plain-"
_plain: Path | None = None


def private_plain_pipe(base: Path | None = None) -> str | None:
    """Point this process and the workers it starts at a private, empty MPS pipe directory,
    unless the user chose one (``CUDA_MPS_PIPE_DIRECTORY``); returns the directory in use.

    CUDA connects to whatever MPS daemon listens in the pipe directory (by default
    ``/tmp/nvidia-mps``), so with a daemon there every "plain" process would silently be an
    MPS client, and another user's daemon can hang CUDA's initialisation. An empty directory
    has no daemon. Call it before CUDA initialises; the directory goes when the process
    exits (or, after a kill, with the next run's :func:`reap_stale`).
    """
    global _plain
    if _plain is None and "CUDA_MPS_PIPE_DIRECTORY" in os.environ:
        return os.environ["CUDA_MPS_PIPE_DIRECTORY"]
    if _plain is None:
        root = _base_dir(base)
        root.mkdir(parents=True, exist_ok=True)
        _plain = Path(tempfile.mkdtemp(prefix=PLAIN_PREFIX, dir=root))
        (_plain / OWNER_FILE).write_text(f"{os.getpid()}\n")
        (_plain / "pipe").mkdir()
        os.environ["CUDA_MPS_PIPE_DIRECTORY"] = str(_plain / "pipe")
        atexit.register(shutil.rmtree, _plain, True)
    return os.environ["CUDA_MPS_PIPE_DIRECTORY"]


def check_plain(pids: Mapping[int, str], devices: Sequence[Device]) -> None:
    """Raise :class:`MpsAttachError` if a worker of a plain mode (pid -> device id) is an MPS
    client after all (NVML says so); where NVML cannot tell, nothing is raised."""
    from gpubench.monitor import nvml

    by_id = {d.id: d for d in devices if d.is_cuda}
    attached = []
    for dev_id in sorted(set(pids.values()) & set(by_id)):
        try:
            kinds = nvml.process_kinds(by_id[dev_id])
        except LookupError:
            continue
        attached += [f"{pid} on {dev_id}" for pid, d in pids.items()
                     if d == dev_id and kinds.get(pid) == "mps"]
    if attached:
        raise MpsAttachError(
            f"worker process(es) {', '.join(sorted(attached))} of a mode without MPS are MPS "
            f"clients (of the daemon in CUDA_MPS_PIPE_DIRECTORY="
            f"{os.environ.get('CUDA_MPS_PIPE_DIRECTORY', '/tmp/nvidia-mps')}): they are not "
            "time-sliced; unset CUDA_MPS_PIPE_DIRECTORY to give plain runs a private one"
        )


# Daemons still running when the interpreter exits (sys.exit from anywhere) are stopped.
_live: set[MpsDaemon] = set()


@atexit.register
def _stop_all() -> None:
    for daemon in list(_live):
        daemon.stop()


@contextlib.contextmanager
def mps_daemon(devices: Sequence[Device], **options: Any) -> Iterator[MpsDaemon]:
    """A started :class:`MpsDaemon`, stopped and cleaned up however the block ends."""
    daemon = MpsDaemon(devices, **options)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
