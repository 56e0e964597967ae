"""``doctor``: what this machine offers for the modes, and what will bite.

:func:`collect_machine` looks (it never changes anything, and never fails for lack of a GPU,
a driver or NVML: what is missing is recorded as ``None`` or a note); :func:`machine_findings`
turns what it saw into :class:`~gpubench.findings.Finding` objects; :func:`format_doctor`
renders both for a terminal.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from gpubench.findings import Finding, format_findings
from gpubench.isolation import OPENMP_WAIT_VARIABLES

SHM_PATH = "/dev/shm"
# Process modes pass weights through shared memory; Docker's default /dev/shm is 64 MiB.
SHM_LOW_BYTES = 1 << 30
MPS_PROCESSES = ("nvidia-cuda-mps-control", "nvidia-cuda-mps-server")
MPS_PIPE_DEFAULT = "/tmp/nvidia-mps"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def shared_memory(path: str = SHM_PATH) -> dict[str, Any]:
    try:
        usage = shutil.disk_usage(path)
    except OSError as exc:
        return {"path": path, "total_bytes": None, "free_bytes": None,
                "note": exc.strerror or str(exc)}
    return {"path": path, "total_bytes": usage.total, "free_bytes": usage.free}


def mps_status() -> dict[str, Any]:
    """Whether an MPS control daemon or server runs (by process name) and its pipe dir."""
    pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or MPS_PIPE_DEFAULT
    found: list[str] = []
    try:
        import psutil

        for proc in psutil.process_iter(["name"]):
            name = proc.info.get("name") or ""
            if name in MPS_PROCESSES:
                found.append(f"{name} ({proc.pid})")
    except Exception:  # psutil missing or a process vanished while listed
        pass
    return {"running": bool(found), "processes": found, "pipe_directory": pipe,
            "pipe_directory_exists": Path(pipe).is_dir()}


def nvml_status() -> dict[str, Any]:
    """NVML's view (through the one facade) and which Python binding is installed."""
    info: dict[str, Any] = {
        "binding": "nvidia-ml-py" if _version("nvidia-ml-py") else None,
        "binding_version": _version("nvidia-ml-py"),
        # The deprecated `pynvml` distribution installs a module of the same name.
        "deprecated_pynvml_package": _version("pynvml"),
    }
    try:
        from gpubench.monitor import nvml
    except ImportError as exc:
        info.update(available=False, note=f"gpubench's NVML facade cannot load: {exc}")
        return info
    try:
        env = nvml.environment_info()
    except Exception as exc:  # a broken driver must not stop the doctor
        info.update(available=False, note=f"{type(exc).__name__}: {exc}")
        return info
    note = env.pop("nvml_note", None)
    info.update(env)
    info["available"] = note is None
    if note is not None:
        info["note"] = note
    return info


def torch_status() -> dict[str, Any]:
    try:
        from gpubench.environment import torch_info
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        return {"torch": None, "note": str(exc)}
    return torch_info()


def cuda_gpus() -> list[dict[str, Any]]:
    """The GPUs torch sees, in CUDA's order."""
    from gpubench.config import ConfigError
    from gpubench.devices import resolve_devices

    try:
        found = resolve_devices("cuda").devices
    except ConfigError:
        return []
    except Exception as exc:  # CUDA initialisation errors (driver/runtime mismatch, ...)
        return [{"error": f"{type(exc).__name__}: {exc}"}]
    return [d.to_dict() for d in found]


def _bus(pci: Any) -> str | None:
    """A PCI bus id in one form: NVML may give 8- or 4-digit domains and any case."""
    if isinstance(pci, bytes):  # old bindings return bytes
        pci = pci.decode()
    if not isinstance(pci, str) or ":" not in pci:
        return None
    domain, rest = pci.split(":", 1)
    return f"{int(domain, 16):04x}:{rest.lower()}"


def order_mismatch(gpus: list[dict[str, Any]], nvml_gpus: list[dict[str, Any]]) -> list[str] | None:
    """``cuda:i is NVML GPU j`` for each GPU whose indices differ; None if unknowable."""
    nvml_index = {_bus(g.get("pci_bus_id")): g.get("nvml_index") for g in nvml_gpus}
    pairs = []
    for g in gpus:
        j = nvml_index.get(_bus(g.get("pci_bus_id")))
        if j is None:
            return None
        pairs.append((int(g.get("index") or 0), int(j)))
    if not pairs:
        return None
    # Relative order matters (CUDA_VISIBLE_DEVICES may hide GPUs): compare sorted positions.
    by_nvml = sorted(pairs, key=lambda p: p[1])
    if [p[0] for p in by_nvml] == sorted(p[0] for p in pairs):
        return []
    return [f"cuda:{i} is NVML GPU {j}" for i, j in pairs]


def collect_machine() -> dict[str, Any]:
    """Everything the doctor looks at, as plain JSON-ready data."""
    from gpubench import __version__
    from gpubench.devices import usable_cores
    from gpubench.environment import cpu_model

    cores = usable_cores()
    gpus = cuda_gpus()
    nvml = nvml_status()
    nvml_gpus = nvml.get("nvml_gpus") or []
    return {
        "gpubench": __version__,
        "python": {"version": sys.version.split()[0], "executable": sys.executable},
        "platform": platform.platform(),
        "cpu": {
            "model": cpu_model(),
            "count": os.cpu_count(),
            "affinity": cores,
            "usable": len(cores),
        },
        "environment": {
            name: os.environ.get(name)
            for name in (
                "CUDA_VISIBLE_DEVICES",
                "CUDA_DEVICE_ORDER",
                *THREAD_VARIABLES,
                *OPENMP_WAIT_VARIABLES,
            )
        },
        "torch": torch_status(),
        "gpus": gpus,
        "nvml": nvml,
        "cuda_nvml_order_differs": order_mismatch(
            [g for g in gpus if "error" not in g], nvml_gpus
        ),
        "mps": mps_status(),
        "shared_memory": shared_memory(),
    }


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def _gpu_findings(m: dict[str, Any]) -> list[Finding]:
    out = []
    torch = m["torch"]
    nvml = m["nvml"]
    gpus = [g for g in m["gpus"] if "error" not in g]
    broken = [g["error"] for g in m["gpus"] if "error" in g]
    if broken:
        out.append(Finding(
            "problem", "cuda-error", f"torch could not initialise CUDA: {broken[0]}.",
            "check that the driver is at least as new as torch's CUDA "
            f"({torch.get('torch_cuda')}) needs; `nvidia-smi` shows the driver",
            f"torch 无法初始化 CUDA：{broken[0]}。",
            f"检查驱动版本是否满足 torch 的 CUDA（{torch.get('torch_cuda')}）要求；`nvidia-smi` 可查看驱动",
        ))
    if not gpus and not broken:
        if not torch.get("torch_cuda"):
            why = f"torch {torch.get('torch')} is a CPU-only build"
            why_zh = f"torch {torch.get('torch')} 是仅 CPU 的版本"
            hint = "install a CUDA build of torch (https://pytorch.org/get-started/locally/)"
            hint_zh = "安装带 CUDA 的 torch（https://pytorch.org/get-started/locally/）"
        else:
            why = (f"torch {torch.get('torch')} is built for CUDA {torch.get('torch_cuda')}, "
                   "but sees no GPU")
            why_zh = f"torch {torch.get('torch')} 为 CUDA {torch.get('torch_cuda')} 构建，但看不到 GPU"
            visible = m["environment"].get("CUDA_VISIBLE_DEVICES")
            if visible is not None:
                why += f" (CUDA_VISIBLE_DEVICES={visible!r})"
                why_zh += f"（CUDA_VISIBLE_DEVICES={visible!r}）"
            hint = ("on a GPU machine, check the driver (`nvidia-smi`) and CUDA_VISIBLE_DEVICES; "
                    "in a container, expose the GPUs (`docker run --gpus all`)")
            hint_zh = ("在 GPU 机器上请检查驱动（`nvidia-smi`）和 CUDA_VISIBLE_DEVICES；"
                       "在容器中请暴露 GPU（`docker run --gpus all`）")
        slots = min(2, m["cpu"]["usable"])
        out.append(Finding(
            "warning", "no-gpu",
            f"no CUDA GPU visible: modes run on CPU slots ({why}; --devices auto gives "
            f"{slots} CPU slot(s) from {m['cpu']['usable']} usable core(s)).",
            hint,
            f"看不到 CUDA GPU：各模式在 CPU 槽上运行（{why_zh}；--devices auto 会用 "
            f"{m['cpu']['usable']} 个可用核心组成 {slots} 个 CPU 槽）。",
            hint_zh,
        ))
    if gpus and not nvml.get("available"):
        out.append(Finding(
            "warning", "no-nvml",
            f"NVML is not available ({nvml.get('note')}): GPU utilisation and per-process "
            "memory will not be measured.",
            "install nvidia-ml-py and make libnvidia-ml.so.1 visible",
            f"NVML 不可用（{nvml.get('note')}）：将无法测量 GPU 利用率和每个进程的显存。",
            "安装 nvidia-ml-py 并确保能找到 libnvidia-ml.so.1",
        ))
    if nvml.get("deprecated_pynvml_package"):
        out.append(Finding(
            "warning", "deprecated-pynvml",
            f"the deprecated `pynvml` package {nvml['deprecated_pynvml_package']} is "
            "installed; it provides a module of the same name as nvidia-ml-py's.",
            "pip uninstall pynvml && pip install --force-reinstall nvidia-ml-py",
            f"安装了已弃用的 `pynvml` 包 {nvml['deprecated_pynvml_package']}，"
            "它与 nvidia-ml-py 提供同名模块。",
            "pip uninstall pynvml && pip install --force-reinstall nvidia-ml-py",
        ))
    differs = m.get("cuda_nvml_order_differs")
    if differs:
        out.append(Finding(
            "warning", "gpu-order",
            "CUDA and NVML (nvidia-smi) number the GPUs differently: " + "; ".join(differs) + ".",
            "set CUDA_DEVICE_ORDER=PCI_BUS_ID so that cuda:N is nvidia-smi's GPU N "
            "(gpubench maps devices by UUID either way)",
            "CUDA 与 NVML（nvidia-smi）对 GPU 的编号不同：" + "；".join(differs) + "。",
            "设置 CUDA_DEVICE_ORDER=PCI_BUS_ID，使 cuda:N 对应 nvidia-smi 的 GPU N"
            "（gpubench 无论如何都按 UUID 对应设备）",
        ))
    for g in nvml.get("nvml_gpus") or []:
        mode = str(g.get("compute_mode") or "").lower()
        name = f"NVML GPU {g.get('nvml_index')} ({g.get('name')})"
        if mode in ("exclusive_process", "exclusive_thread", "prohibited"):
            out.append(Finding(
                "problem" if mode == "prohibited" else "warning", "compute-mode",
                f"{name} is in compute mode {mode}: "
                + ("no process can use it." if mode == "prohibited"
                   else "one process at a time, so multiprocess on it fails."),
                "nvidia-smi -i N -c DEFAULT (needs root)",
                f"{name} 处于计算模式 {mode}："
                + ("任何进程都无法使用。" if mode == "prohibited"
                   else "同一时间只允许一个进程，multiprocess 模式会失败。"),
                "nvidia-smi -i N -c DEFAULT（需要 root）",
            ))
        if g.get("mig_mode"):
            out.append(Finding(
                "warning", "mig",
                f"{name} has MIG enabled: CUDA sees its MIG instances, each a small GPU of its own.",
                "results on MIG instances are not results for the whole GPU; say so when "
                "you compare",
                f"{name} 启用了 MIG：CUDA 看到的是各个 MIG 实例，每个都是独立的小 GPU。",
                "MIG 实例上的结果不代表整块 GPU；比较时请注明",
            ))
    if gpus:
        mps = m["mps"]
        if mps["running"]:
            out.append(Finding(
                "info", "mps",
                "an MPS daemon is running (" + ", ".join(mps["processes"]) + "): processes on "
                "one GPU can run kernels at the same time, so multiprocess may beat serial.",
                "", "MPS 守护进程正在运行（" + ", ".join(mps["processes"]) + "）：同一 GPU 上的"
                "多个进程可以同时执行内核，因此 multiprocess 可能快于串行。", "",
            ))
        else:
            out.append(Finding(
                "info", "no-mps",
                "no MPS daemon runs: processes sharing a GPU are time-sliced.",
                "`nvidia-cuda-mps-control -d` lets them share it concurrently",
                "没有运行 MPS 守护进程：共享同一 GPU 的进程按时间片轮流执行。",
                "`nvidia-cuda-mps-control -d` 可让它们并发共享 GPU",
            ))
        if not torch.get("tf32_matmul"):
            out.append(Finding(
                "info", "tf32-off",
                "TF32 matmuls are off (torch.backends.cuda.matmul.allow_tf32 = False): on "
                "Ampere and later GPUs matmuls run in full FP32; cuDNN TF32 is "
                f"{'on' if torch.get('tf32_cudnn') else 'off'}, cudnn.benchmark is "
                f"{'on' if torch.get('cudnn_benchmark') else 'off'}.",
                "keep the flags the same in every run you compare (gpubench records them)",
                "TF32 矩阵乘法关闭（torch.backends.cuda.matmul.allow_tf32 = False）：Ampere "
                "及以后的 GPU 上矩阵乘法以完整 FP32 运行；cuDNN TF32 "
                f"{'开启' if torch.get('tf32_cudnn') else '关闭'}，cudnn.benchmark "
                f"{'开启' if torch.get('cudnn_benchmark') else '关闭'}。",
                "在所有要比较的运行中保持这些设置一致（gpubench 会记录它们）",
            ))
    return out


def _host_findings(m: dict[str, Any]) -> list[Finding]:
    out = []
    cpu = m["cpu"]
    if cpu["usable"] < (cpu["count"] or 0):
        out.append(Finding(
            "info", "cpu-affinity",
            f"this process may use {cpu['usable']} of {cpu['count']} cores "
            f"({','.join(str(c) for c in cpu['affinity'])}): CPU slots are made from those.",
            "", f"本进程只能使用 {cpu['count']} 个核心中的 {cpu['usable']} 个"
            f"（{','.join(str(c) for c in cpu['affinity'])}）：CPU 槽由这些核心组成。", "",
        ))
    if cpu["usable"] < 2 and not m["gpus"]:
        out.append(Finding(
            "warning", "one-core",
            "only 1 usable core and no GPU: there is one CPU slot, so multi-device scaling "
            "cannot be shown here.",
            "run on a machine with 2 or more cores (or GPUs)",
            "只有 1 个可用核心且没有 GPU：只有一个 CPU 槽，无法在此展示多设备扩展。",
            "请在有 2 个以上核心（或 GPU）的机器上运行",
        ))
    shm = m["shared_memory"]
    total = shm.get("total_bytes")
    if total is None:
        out.append(Finding(
            "warning", "no-shm",
            f"{shm['path']} cannot be read ({shm.get('note')}): process modes pass weights "
            "through shared memory.",
            "mount a tmpfs on /dev/shm", f"无法读取 {shm['path']}（{shm.get('note')}）："
            "多进程模式通过共享内存传递权重。", "在 /dev/shm 挂载 tmpfs",
        ))
    elif total < SHM_LOW_BYTES:
        out.append(Finding(
            "warning", "small-shm",
            f"{shm['path']} holds only {_mib(total)} ({_mib(shm['free_bytes'])} free): process "
            "modes keep the global model and every client's update there and fail when it "
            "fills (Docker's default is 64 MiB).",
            "docker run --shm-size=8g (or --ipc=host)",
            f"{shm['path']} 只有 {_mib(total)}（空闲 {_mib(shm['free_bytes'])}）：多进程模式把"
            "全局模型和每个客户端的更新放在这里，空间用完就会失败（Docker 默认 64 MiB）。",
            "docker run --shm-size=8g（或 --ipc=host）",
        ))
    threads = {k: v for k, v in m["environment"].items() if k in THREAD_VARIABLES and v}
    if threads:
        text = ", ".join(f"{k}={v}" for k, v in threads.items())
        out.append(Finding(
            "info", "thread-variables",
            f"{text} is set: the serial and threaded modes inherit it; gpubench sets its own "
            "in workers.",
            "", f"设置了 {text}：serial 和 threaded 模式会继承它；gpubench 在工作进程中自行设置。",
            "",
        ))
    return out


def machine_findings(machine: dict[str, Any]) -> list[Finding]:
    levels = ("problem", "warning", "info")
    found = _gpu_findings(machine) + _host_findings(machine)
    return sorted(found, key=lambda f: levels.index(f.level))


def diagnose() -> dict[str, Any]:
    """The doctor's whole answer: what the machine offers plus a ``findings`` list."""
    machine = collect_machine()
    machine["findings"] = [
        {"level": f.level, "code": f.code, "message": f.message, "hint": f.hint,
         "message_zh": f.message_zh, "hint_zh": f.hint_zh}
        for f in machine_findings(machine)
    ]
    return machine


def _onoff(value: Any) -> str:
    return "—" if value is None else ("on" if value else "off")


def format_doctor(report: dict[str, Any], lang: str = "en") -> str:
    """The doctor's report for a terminal."""
    t = report["torch"]
    cpu = report["cpu"]
    nvml = report["nvml"]
    shm = report["shared_memory"]
    env = report["environment"]
    lines = [
        f"gpubench {report['gpubench']}  Python {report['python']['version']}  "
        f"{report['platform']}",
        f"CPU       {cpu['model'] or '?'}: {cpu['count']} cores, this process may use "
        f"{cpu['usable']} ({','.join(str(c) for c in cpu['affinity'])})",
        f"torch     {t.get('torch')} ({'CUDA ' + str(t['torch_cuda']) if t.get('torch_cuda') else 'CPU-only build'}), "
        f"{t.get('torch_threads')} threads, cuDNN {t.get('cudnn') or '—'}",
        f"flags     cudnn.benchmark {_onoff(t.get('cudnn_benchmark'))}, deterministic "
        f"{_onoff(t.get('cudnn_deterministic'))}, TF32 matmul {_onoff(t.get('tf32_matmul'))}, "
        f"TF32 cuDNN {_onoff(t.get('tf32_cudnn'))}",
        "env       " + ", ".join(f"{k}={v if v is not None else '(unset)'}" for k, v in env.items()),
        f"NVML      {'available' if nvml.get('available') else 'not available'}; binding "
        f"{nvml.get('binding') or '—'} {nvml.get('binding_version') or ''}".rstrip()
        + (f"; driver {nvml['nvidia_driver_version']}" if nvml.get("nvidia_driver_version") else "")
        + (f", CUDA driver {nvml['cuda_driver_version']}" if nvml.get("cuda_driver_version") else ""),
        f"MPS       {'running' if report['mps']['running'] else 'not running'}",
        "/dev/shm  " + (f"{_mib(shm['total_bytes'])} ({_mib(shm['free_bytes'])} free)"
                         if shm.get("total_bytes") is not None else "unreadable"),
    ]
    gpus = [g for g in report["gpus"] if "error" not in g]
    nvml_by_bus = {_bus(g.get("pci_bus_id")): g for g in nvml.get("nvml_gpus") or []}
    if not gpus:
        lines.append("GPUs      none visible")
    for g in gpus:
        extra = nvml_by_bus.get(_bus(g.get("pci_bus_id")), {})
        mem = _mib(g["memory_total_bytes"]) if g.get("memory_total_bytes") else "?"
        lines.append(
            f"{g['id']:<9} {g['name']}, {mem}, compute mode {extra.get('compute_mode', '?')}, "
            f"MIG {_onoff(extra.get('mig_mode'))}, {g.get('uuid') or ''}"
        )
    findings = [Finding(**f) for f in report["findings"]]
    text = format_findings(findings, lang)
    return "\n".join(lines) + ("\n\n" + text if text else "")
