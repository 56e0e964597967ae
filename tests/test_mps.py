"""The private MPS daemon's whole lifecycle, against a fake ``nvidia-cuda-mps-control`` that
the tests put first on PATH.

The fake behaves like the real front end and daemon where gpubench relies on them: ``-d``
forks a daemon that writes ``nvidia-cuda-mps-control.pid`` into ``CUDA_MPS_PIPE_DIRECTORY``
and returns; without arguments it reads commands from stdin (``get_server_list``,
``get_client_list PID``, ``quit``) and exits non-zero when no daemon answers in that pipe
directory. A "worker" attaches as CUDA would, when it starts with that pipe directory in its
environment (it adds its pid to the daemon's client list); a worker started without it stays
time-sliced.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from gpubench.machine.devices import Device
from gpubench.modes import mps
from gpubench.modes.pool import WorkerSpec

FAKE_CONTROL = r'''
import os, signal, sys, time
pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")
pid_file = os.path.join(pipe, "nvidia-cuda-mps-control.pid")

def daemon_pid():
    try:
        pid = int(open(pid_file).read())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None

if sys.argv[1:] == ["-d"]:
    if os.environ.get("FAKE_MPS_FAIL_START"):
        print("An instance of this daemon is already running", file=sys.stderr)
        sys.exit(1)
    log = os.environ["CUDA_MPS_LOG_DIRECTORY"]
    ready_r, ready_w = os.pipe()
    if os.fork():
        os.close(ready_w)
        os.read(ready_r, 1)  # returns once the daemon runs, as the real -d does
        sys.exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    def quit_(signum, frame):
        os.unlink(pid_file)
        os._exit(0)
    signal.signal(signal.SIGTERM, quit_)
    with open(os.path.join(pipe, "daemon-env"), "w") as f:
        f.write(os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    with open(os.path.join(log, "control.log"), "a") as f:
        f.write("[fake] Starting control daemon\n")
    with open(pid_file + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(pid_file + ".tmp", pid_file)
    os.write(ready_w, b"x")
    while True:
        signal.pause()

pid = daemon_pid()
if pid is None:
    print("Cannot find MPS control daemon process", file=sys.stderr)
    sys.exit(1)
clients_file = os.path.join(pipe, "clients")
clients = [int(x) for x in open(clients_file).read().split()] if os.path.exists(clients_file) else []
for line in sys.stdin:
    words = line.split()
    if words == ["get_server_list"]:
        if clients:
            print(pid)  # the fake's server is the daemon itself
    elif words[:1] == ["get_client_list"] and len(words) == 2:
        for c in clients:
            print(c)
    elif words == ["quit"]:
        os.kill(pid, signal.SIGTERM)
        while daemon_pid() is not None:
            time.sleep(0.01)
'''

# A worker: "initialises CUDA" (attaches when its environment names a live daemon's pipe
# directory), says so on stdout, then waits until its stdin closes.
FAKE_WORKER = r'''
import os, sys
pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY")
if pipe and os.path.exists(os.path.join(pipe, "nvidia-cuda-mps-control.pid")):
    with open(os.path.join(pipe, "clients"), "a") as f:
        f.write(f"{os.getpid()}\n")
print(os.environ.get("CUDA_VISIBLE_DEVICES", ""), flush=True)
sys.stdin.read()
'''

UUID = "GPU-aaaaaaaa-1111-2222-3333-444444444444"
GPU = Device(id="cuda:0", kind="cuda", index=0, name="fake", uuid=UUID)


@pytest.fixture
def fake_control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / mps.CONTROL
    script.write_text(f"#!{sys.executable}\n{FAKE_CONTROL}")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return script


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path / "mps"


def options(base: Path) -> dict:
    # Only MPS processes of this test count as "already running" (others may run tests too).
    return {"base_dir": base, "find_running": lambda: mps.find_mps_processes(under=base.parent)}


def daemon_pid(daemon: mps.MpsDaemon) -> int:
    return int(Path(daemon.environment["CUDA_MPS_PIPE_DIRECTORY"], mps.PID_FILE).read_text())


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.stdin.close()
            p.wait(10)


def start_worker(started: list, env: dict[str, str]) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", FAKE_WORKER], env={**os.environ, **env},
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    started.append(p)
    p.stdout.readline()  # it has "initialised CUDA"
    return p


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_lifecycle_private_dirs_clients_attached_and_cleanup(
    fake_control: Path, base: Path, workers: list
) -> None:
    with mps.mps_daemon([GPU], **options(base)) as daemon:
        pipe = Path(daemon.environment["CUDA_MPS_PIPE_DIRECTORY"])
        log = Path(daemon.environment["CUDA_MPS_LOG_DIRECTORY"])
        assert pipe.is_dir() and log.is_dir() and pipe.parent.parent == base
        assert pipe.parent.name.startswith(mps.PREFIX)
        pid = daemon_pid(daemon)
        assert not gone(pid) and psutil.Process(pid).uids().real == os.getuid()
        assert (pipe / "daemon-env").read_text() == UUID  # the daemon sees the run's GPUs
        env = daemon.worker_environment(GPU)
        assert env["CUDA_VISIBLE_DEVICES"] == UUID and env["CUDA_MPS_PIPE_DIRECTORY"] == str(pipe)
        pids = {start_worker(workers, env).pid: "cuda:0" for _ in range(2)}
        daemon.check_attached(pids)
        assert daemon.clients() == set(pids) and daemon.servers() == [pid]
        assert os.environ.get("CUDA_MPS_PIPE_DIRECTORY") != str(pipe)  # the parent is no client
        for p in workers:
            p.stdin.close()
            p.wait(10)
    assert gone(pid)
    assert not pipe.parent.exists()
    assert mps.find_mps_processes(under=base.parent) == []


def test_a_worker_that_fell_back_to_time_slicing_is_a_failure_with_its_reason(
    fake_control: Path, base: Path, workers: list
) -> None:
    with pytest.raises(mps.MpsAttachError) as failure:
        with mps.mps_daemon([GPU], **options(base)) as daemon:
            pid = daemon_pid(daemon)
            ok = start_worker(workers, daemon.worker_environment(GPU))
            plain = start_worker(workers, {})  # no MPS environment: a context of its own
            daemon.check_attached({ok.pid: "cuda:0", plain.pid: "cuda:0"})
    message = str(failure.value)
    assert f"{plain.pid} on cuda:0" in message and str(ok.pid) not in message
    assert "time-slicing" in message
    assert gone(pid) and list(base.iterdir()) == []


def test_cleanup_after_the_workers_crash(fake_control: Path, base: Path) -> None:
    with pytest.raises(RuntimeError, match="worker 0 died"):
        with mps.mps_daemon([GPU], **options(base)) as daemon:
            pid = daemon_pid(daemon)
            env = {**os.environ, **daemon.worker_environment(GPU)}
            crashed = subprocess.run([sys.executable, "-c", "import os; os._exit(3)"], env=env)
            raise RuntimeError(f"worker 0 died (exit {crashed.returncode})")
    assert gone(pid) and list(base.iterdir()) == []


PARENT = r'''
import sys
from pathlib import Path
from gpubench.cli import sigterm_as_interrupt
from gpubench.modes import mps
from gpubench.machine.devices import Device
base = Path(sys.argv[1])
gpu = Device(id="cuda:0", kind="cuda", index=0, name="fake", uuid="GPU-a")
with sigterm_as_interrupt():  # as every command runs
    with mps.mps_daemon([gpu], base_dir=base, find_running=lambda: []) as daemon:
        print(daemon.environment["CUDA_MPS_PIPE_DIRECTORY"], flush=True)
        sys.stdin.read()  # a run in progress
'''


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_stop_the_daemon(
    fake_control: Path, base: Path, signum: int
) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(base)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A suite started in the background of a shell hands SIGINT down ignored; a command
        # typed in a terminal gets it as usual, which is what this test is about.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    pipe = Path(parent.stdout.readline().strip())
    pid = int((pipe / mps.PID_FILE).read_text())
    parent.send_signal(signum)
    parent.wait(timeout=30)  # stdin stays open: only the signal can end the run
    _, err = parent.communicate()
    assert parent.returncode == -signal.SIGINT, err  # both unwind as a KeyboardInterrupt
    assert gone(pid) and not pipe.parent.exists()


def test_a_killed_runs_daemon_is_reaped_at_the_next_start(
    fake_control: Path, base: Path, workers: list
) -> None:
    stale = mps.MpsDaemon([GPU], **options(base))
    stale.start()
    old_pid = daemon_pid(stale)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    (stale.root / mps.OWNER_FILE).write_text(dead.stdout)  # its owner died (SIGKILL)
    old_root = stale.root
    mps._live.discard(stale)  # as in a process that died: nothing stops it at exit
    with mps.mps_daemon([GPU], **options(base)) as daemon:
        assert gone(old_pid) and not old_root.exists()
        assert not gone(daemon_pid(daemon))
    assert list(base.iterdir()) == []


def test_refusals_name_their_reason(
    fake_control: Path, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(mps.MpsNotApplicable, match="cpu:0 is a CPU slot"):
        mps.MpsDaemon([Device(id="cpu:0", kind="cpu", index=0, name="slot", cores=(0,))])
    with pytest.raises(mps.MpsUnavailable, match="no GPU UUID for cuda:1"):
        mps.MpsDaemon([GPU, Device(id="cuda:1", kind="cuda", index=1, name="fake")])
    # Another MPS server (here: a daemon someone else started) is already running.
    other = base.parent / "other"
    (other / "pipe").mkdir(parents=True)
    (other / "log").mkdir()
    env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(other / "pipe"),
           "CUDA_MPS_LOG_DIRECTORY": str(other / "log")}
    subprocess.run([str(fake_control), "-d"], env=env, check=True)
    other_pid = int((other / "pipe" / mps.PID_FILE).read_text())
    try:
        with pytest.raises(mps.MpsBusy, match=rf"not applicable here: .*already running \(.*{other_pid}, "):
            mps.MpsDaemon([GPU], **options(base)).start()
    finally:
        subprocess.run([str(fake_control)], input="quit\n", text=True, env=env, check=True)
    assert gone(other_pid)
    # The daemon cannot start.
    monkeypatch.setenv("FAKE_MPS_FAIL_START", "1")
    with pytest.raises(mps.MpsUnavailable, match="exited with status 1: An instance"):
        mps.MpsDaemon([GPU], **options(base)).start()
    assert list(base.iterdir()) == []
    # No binary at all.
    monkeypatch.setenv("PATH", str(base))
    with pytest.raises(mps.MpsUnavailable, match=f"{mps.CONTROL} not found on PATH"):
        mps.MpsDaemon([GPU], **options(base)).start()


def test_no_client_list_falls_back_to_nvml_process_types(
    fake_control: Path, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpubench.monitor import nvml

    kinds = {101: "mps", 102: "compute"}
    monkeypatch.setattr(nvml, "process_kinds", lambda device: kinds)
    with mps.mps_daemon([GPU], **options(base)) as daemon:
        monkeypatch.setattr(daemon, "clients", lambda: None)
        daemon.check_attached({101: "cuda:0"})
        with pytest.raises(mps.MpsAttachError, match="102 on cuda:0"):
            daemon.check_attached({101: "cuda:0", 102: "cuda:0"})


TORCH_WORKER = r'''
import sys, torch
x = torch.randn(256, 256, device="cuda")
for _ in range(20):
    x = (x @ x).clamp_(-1, 1)
torch.cuda.synchronize()
print("ready", flush=True)
sys.stdin.read()
'''


@pytest.mark.gpu
def test_real_mps_daemon_two_torch_workers_attach(workers: list) -> None:
    from gpubench.machine.devices import resolve_devices

    device = resolve_devices("cuda").devices[0]
    try:
        daemon = mps.MpsDaemon([device])
        daemon.start()
    except mps.MpsUnavailable as exc:
        pytest.skip(str(exc))
    try:
        env = daemon.worker_environment(device)
        procs = []
        for _ in range(2):
            p = subprocess.Popen([sys.executable, "-c", TORCH_WORKER], env={**os.environ, **env},
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            workers.append(p)
            assert p.stdout.readline().strip() == "ready"
            procs.append(p)
        daemon.check_attached({p.pid: device.id for p in procs})
        servers = daemon.servers() or []
        assert servers, "an MPS server runs for the clients"
        for p in procs:
            p.stdin.close()
            p.wait(30)
    finally:
        pid = daemon_pid(daemon) if daemon.root is not None else None
        daemon.stop()
    assert pid is None or gone(pid)
    assert all(gone(s) for s in servers)


@pytest.mark.slow
def test_mps_on_adds_twins_that_are_not_applicable_on_cpu_slots(tmp_path):
    from gpubench.cli import main

    out = tmp_path / "r.json"
    code = main(["compare", "--devices", "cpu:1", "--mps", "on", "--modes", "serial,multi-gpu",
                 "--case", "mlp", "--clients", "2", "--samples-per-client", "16", "--batch-size", "16",
                 "--rounds", "1", "--warmup", "0", "--sample-interval", "0", "--quiet",
                 "--out", str(out)])
    import json

    modes = {m["name"]: m for m in json.loads(out.read_text())["modes"]}
    assert list(modes) == ["serial", "multi-gpu", "multi-gpu+mps"]
    assert modes["multi-gpu"]["status"] == "ok"
    assert modes["multi-gpu+mps"]["status"] == "not_applicable"
    assert "CPU slot" in modes["multi-gpu+mps"]["error"]
    assert code == 0


def test_with_mps_rows_puts_each_twin_after_its_mode():
    from gpubench.modes import with_mps_rows

    assert with_mps_rows(("serial", "multiprocess", "threaded", "multi-gpu")) == (
        "serial", "multiprocess", "multiprocess+mps", "threaded", "multi-gpu", "multi-gpu+mps")


def _mode(name, times, workers=2):
    from gpubench.results import ModeResult

    return ModeResult(name=name, status="ok", devices=("cuda:0",), workers=workers,
                      round_times_s=tuple(times))


@pytest.mark.parametrize(("twin_times", "variant"), [
    ((0.70, 0.71, 0.69, 0.70, 0.72, 0.70), "faster"),
    ((1.00, 1.01, 0.99, 1.00, 1.02, 1.00), "same"),
    ((1.40, 1.41, 1.39, 1.40, 1.42, 1.40), "slower"),
])
def test_the_mps_finding_compares_the_twins_side_by_side(twin_times, variant):
    from gpubench.findings import compute_findings
    from gpubench.report.findings import finding_text
    from gpubench.results import Results

    plain = (1.00, 1.01, 0.99, 1.00, 1.02, 1.00)
    results = Results(environment={}, config={"interleave": True, "modes": ["serial"]},
                      modes=(_mode("serial", plain, 1), _mode("multiprocess", plain),
                             _mode("multiprocess+mps", twin_times)))
    (found,) = [f for f in compute_findings(results) if f.code == "mps-effect"]
    assert found.facts["variant"] == variant
    for lang in ("en", "zh"):
        message, hint = finding_text(found, lang)
        assert "multiprocess+mps" in message and "MPS" in hint


# --- plain modes stay plain; another user's daemon is not our failure -------------------------


def test_plain_runs_get_a_private_empty_pipe_directory_unless_the_user_set_one(tmp_path, monkeypatch):
    monkeypatch.setattr(mps, "_plain", None)
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", "/srv/mps-pipe")
    assert mps.private_plain_pipe(tmp_path) == "/srv/mps-pipe"  # the user's choice stays
    assert not list(tmp_path.iterdir())
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY")
    pipe = mps.private_plain_pipe(tmp_path)
    assert pipe is not None and os.environ["CUDA_MPS_PIPE_DIRECTORY"] == pipe
    assert Path(pipe).is_dir() and not list(Path(pipe).iterdir())  # no daemon listens there
    assert Path(pipe).parent.name.startswith(mps.PLAIN_PREFIX)
    assert mps.private_plain_pipe(tmp_path) == pipe  # once per process
    monkeypatch.setattr(mps, "_plain", None)


def test_a_plain_worker_that_is_an_mps_client_fails_its_mode(monkeypatch):
    from gpubench.modes.base import ModeFailure
    from gpubench.modes.processes import ProcessModeBase
    from gpubench.monitor import nvml

    monkeypatch.setattr(nvml, "process_kinds", lambda d: {101: "compute", 102: "mps"})
    with pytest.raises(mps.MpsAttachError, match=r"102 on cuda:0 of a mode without MPS"):
        mps.check_plain({101: "cuda:0", 102: "cuda:0"}, [GPU])
    mode = ProcessModeBase.__new__(ProcessModeBase)
    mode.specs = [WorkerSpec(0, GPU, (0,))]
    mode.pool = SimpleNamespace(worker_pids={102: "cuda:0"})  # type: ignore[assignment]
    with pytest.raises(ModeFailure, match="are MPS clients"):
        mode.check_not_mps()
    mode.expects_mps = True  # the +mps modes want exactly that
    mode.check_not_mps()

    def cannot_tell(d):
        raise LookupError("no NVML")

    monkeypatch.setattr(nvml, "process_kinds", cannot_tell)
    mps.check_plain({102: "cuda:0"}, [GPU])  # nothing known, nothing raised


def test_another_users_daemon_makes_the_mps_rows_not_applicable(monkeypatch):
    from gpubench.modes.base import NotApplicable
    from gpubench.modes.mps_modes import MultiprocessMpsMode

    def busy(self):
        raise mps.MpsBusy("MPS not applicable here: another MPS server is already running "
                          "(nvidia-cuda-mps-control (77, alice))")

    monkeypatch.setattr(mps.MpsDaemon, "start", busy)
    # the exclusive-process check has tests of its own (test_gpu_path)
    monkeypatch.setattr("gpubench.modes.mps_modes.check_parent_gpu_shared", lambda *a: None)
    mode = MultiprocessMpsMode.__new__(MultiprocessMpsMode)
    mode.specs, mode.plan = [WorkerSpec(0, GPU, (0,))], None
    with pytest.raises(NotApplicable, match="alice"):
        mode.start()
