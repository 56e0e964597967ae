"""Findings: what a run's numbers say, why, and what to do about it.

``compute_findings(results)`` reads a :class:`Results` alone (a saved JSON file on a machine
without a GPU is enough) and returns :class:`Finding` objects; every message carries the
measured numbers behind it, in English and Chinese. Nothing here measures or imports torch;
``format_findings`` turns findings into terminal text, and the report renders them itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gpubench.results import DeviceStats, ModeResult, Results
from gpubench.stats import NOISY_SPREAD, summarize

LEVELS = ("problem", "warning", "info")

# Thresholds, each with the reason for its value.
SLOWER = 0.95  # a speedup below this is slower than serial beyond round-to-round noise
NO_FASTER = 1.10  # several processes on one device must beat this to count as parallel
STARVED_PCT = 50.0  # a device busy less than half the time in serial is waiting on the host
SM_STARVED_PCT = 30.0  # kernels that keep under 30% of the SMs busy are too small
UNBALANCED = 1.15  # busiest device's training time over the mean: 15% idle waiting on it
POOR_SCALING = 0.70  # multi-device speedup below 70% of the number of devices
GOOD_SCALING = 0.85  # and at or above 85% of it: the claim "k devices, ~k-fold" holds
MIN_COLD_START_S = 0.5  # shorter start-ups do not matter, whatever the run length

THREAD_MODES = ("threaded", "streams")
MULTI_DEVICE_MODES = ("multi-gpu",)


@dataclass(frozen=True)
class Finding:
    """One diagnostic statement about a run: ``level`` is info, warning or problem."""

    level: str
    code: str
    message: str
    hint: str = ""
    message_zh: str = ""
    hint_zh: str = ""

    def text(self, lang: str = "en") -> tuple[str, str]:
        """(message, hint) in ``lang``; English where no translation exists."""
        if lang == "zh":
            return self.message_zh or self.message, self.hint_zh or self.hint
        return self.message, self.hint


# --- number formatting (the same in both languages) -----------------------------------------


def _s(seconds: float) -> str:
    return f"{seconds:.3g} s"


def _x(ratio: float) -> str:
    return f"{ratio:.2f}x"


def _pct(value: float) -> str:
    return f"{value:.0f}%"


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


# --- helpers over the data model --------------------------------------------------------------


def _ok(results: Results, name: str) -> ModeResult | None:
    mode = results.mode(name)
    return mode if mode is not None and mode.ok and mode.round_times_s else None


def _speedup(results: Results, mode: ModeResult) -> float | None:
    if mode.speedup_vs_serial is not None:
        return mode.speedup_vs_serial
    serial = _ok(results, "serial")
    if serial is None or not mode.ok or mode.median_round_s is None:
        return None
    s = serial.median_round_s
    return s / mode.median_round_s if s and mode.median_round_s > 0 else None


def _stats(mode: ModeResult, device: str) -> DeviceStats | None:
    return next((s for s in mode.device_stats if s.device == device), None)


def _is_cpu(device: str) -> bool:
    return device.startswith("cpu")


def _device_word(device: str) -> tuple[str, str]:
    return ("CPU slot", "CPU 槽") if _is_cpu(device) else ("GPU", "GPU")


def _versus_serial(serial: ModeResult, mode: ModeResult, sp: float) -> tuple[str, str]:
    m, s = _s(mode.median_round_s or 0.0), _s(serial.median_round_s or 0.0)
    return (
        f"{m} vs serial's {s} per round = {_x(sp)}",
        f"每轮 {m}，串行为 {s}，即 {_x(sp)}",
    )


# --- the rules ---------------------------------------------------------------------------------


def _threads_slower(results: Results) -> list[Finding]:
    out = []
    serial = _ok(results, "serial")
    for name in THREAD_MODES:
        mode = _ok(results, name)
        if mode is None or serial is None or mode.median_round_s is None:
            continue
        sp = _speedup(results, mode)
        if sp is None or sp >= SLOWER:
            continue
        dev = mode.devices[0] if mode.devices else "device 0"
        nums, nums_zh = _versus_serial(serial, mode, sp)
        out.append(Finding(
            "warning", "threads-slower",
            f"{name}: {mode.workers} threads on {dev} are slower than serial: {nums}.",
            "threads of one process share the GIL and one device, whose kernels (or cores) "
            "they take in turns, and they add switching and contention; use multi-gpu (one "
            "process per device) or the vectorized mode to train clients at once",
            f"{name}：{mode.workers} 个线程在 {dev} 上比串行更慢：{nums_zh}。",
            "同一进程的线程共享 GIL 和同一个设备，只能轮流使用其算力，还增加切换与争用开销；"
            "请改用 multi-gpu（每个设备一个进程）或 vectorized 模式同时训练多个客户端",
        ))
    return out


def _one_device_faster(results: Results) -> list[Finding]:
    """Threads or processes on one device that beat serial: serial left the device idle."""
    serial = _ok(results, "serial")
    if serial is None or not serial.devices:
        return []
    stats = _stats(serial, serial.devices[0])
    util = stats.util_mean_pct if stats is not None else None
    parts = []
    for mode in results.modes:
        if mode.name == "serial" or not mode.ok or len(mode.devices) != 1 or mode.workers < 2:
            continue
        sp = _speedup(results, mode)
        if sp is not None and sp >= NO_FASTER:
            parts.append(f"{mode.name} ({mode.workers} workers) {_x(sp)}")
    if not parts:
        return []
    busy = f"; serial kept {serial.devices[0]} busy {_pct(util)} of the time" if util is not None else ""
    busy_zh = f"；串行时 {serial.devices[0]} 只有 {_pct(util)} 的时间在工作" if util is not None else ""
    return [Finding(
        "info", "one-device-faster",
        f"on one device, {', '.join(parts)} vs serial{busy}: serial leaves the device idle "
        "between its small steps and the other workers fill those gaps, so serial is "
        "host-bound here, not device-bound.",
        "the same gain without extra workers: a bigger batch, or the vectorized mode",
        f"在同一设备上，{', '.join(parts)}（相对串行）{busy_zh}：串行在小步骤之间让设备空闲，"
        "其他工作线程/进程填补了这些空隙，因此这里串行受限于主机而非设备。",
        "不增加工作者也能得到同样的收益：更大的批，或 vectorized 模式",
    )]


def _process_memory(results: Results, mode: ModeResult, device: str) -> tuple[str, str] | None:
    """What each process on ``device`` costs in memory, from the best source recorded."""
    stats = _stats(mode, device)
    per_pid = list(stats.process_mem_peak_bytes.values()) if stats else []
    if per_pid:
        each = sum(per_pid) / len(per_pid)
        reserved = [w.max_reserved_bytes for w in mode.worker_memory
                    if w.device == device and w.max_reserved_bytes is not None]
        en = f"each of its {len(per_pid)} processes holds {_mib(each)} of device memory"
        zh = f"其 {len(per_pid)} 个进程每个占用 {_mib(each)} 设备显存"
        if reserved and len(reserved) == len(per_pid):
            ctx = each - sum(reserved) / len(reserved)
            if ctx > 0:
                en += f", {_mib(ctx)} of it outside torch's allocator (mostly the CUDA context)"
                zh += f"，其中 {_mib(ctx)} 不在 torch 分配器中（主要是 CUDA 上下文）"
        return en, zh
    serial = _ok(results, "serial")
    serial_stats = _stats(serial, device) if serial is not None else None
    if (stats is not None and serial_stats is not None and stats.mem_peak_bytes is not None
            and serial_stats.mem_peak_bytes is not None and mode.workers > 1
            and stats.mem_peak_bytes > serial_stats.mem_peak_bytes):
        extra = (stats.mem_peak_bytes - serial_stats.mem_peak_bytes) / (mode.workers - 1)
        return (
            f"each extra process costs {_mib(extra)} of device memory (peak "
            f"{_mib(stats.mem_peak_bytes)} vs serial's {_mib(serial_stats.mem_peak_bytes)})",
            f"每多一个进程多占 {_mib(extra)} 设备内存（峰值 {_mib(stats.mem_peak_bytes)}，"
            f"串行为 {_mib(serial_stats.mem_peak_bytes)}）",
        )
    rss = [w.rss_bytes for w in mode.worker_memory if w.device == device and w.rss_bytes]
    if rss:
        each = sum(rss) / len(rss)
        return (
            f"each worker process has {_mib(each)} resident (its own interpreter, torch and model)",
            f"每个工作进程常驻内存 {_mib(each)}（各自的解释器、torch 和模型）",
        )
    return None


def _processes_time_sliced(results: Results) -> list[Finding]:
    out = []
    serial = _ok(results, "serial")
    for mode in results.modes:
        if mode.name != "multiprocess" and not (
            mode.name in MULTI_DEVICE_MODES and len(mode.devices) == 1
        ):
            continue
        if not mode.ok or mode.workers < 2 or len(mode.devices) != 1 or serial is None:
            continue
        sp = _speedup(results, mode)
        if sp is None or sp >= NO_FASTER or mode.median_round_s is None:
            continue
        dev = mode.devices[0]
        nums, nums_zh = _versus_serial(serial, mode, sp)
        en = f"{mode.name}: {mode.workers} processes on one device ({dev}) are no faster than serial: {nums}"
        zh = f"{mode.name}：同一设备（{dev}）上的 {mode.workers} 个进程并不比串行快：{nums_zh}"
        memory = _process_memory(results, mode, dev)
        if memory is not None:
            en += f"; {memory[0]}"
            zh += f"；{memory[1]}"
        gpu = not _is_cpu(dev)
        out.append(Finding(
            "warning", "processes-time-sliced", en + ".",
            ("a GPU runs one process's kernels at a time (time-slicing) unless MPS is running; "
             "every process pays its own CUDA context; put one process on each GPU (multi-gpu) "
             "or batch the clients (vectorized)") if gpu else
            ("processes on one CPU slot share its cores in turns; give each process its own "
             "slot (multi-gpu on --devices cpu:K) or batch the clients (vectorized)"),
            zh + "。",
            ("GPU 一次只执行一个进程的内核（时间片轮转），除非启用 MPS；每个进程都要付出自己的 "
             "CUDA 上下文内存；请每个 GPU 放一个进程（multi-gpu）或把客户端合批（vectorized）")
            if gpu else
            ("同一 CPU 槽上的进程轮流使用其核心；请让每个进程独占一个槽（multi-gpu 配合 "
             "--devices cpu:K）或把客户端合批（vectorized）"),
        ))
    return out


def _device_starved(results: Results) -> list[Finding]:
    serial = _ok(results, "serial")
    if serial is None or not serial.devices:
        return []
    dev = serial.devices[0]
    stats = _stats(serial, dev)
    if stats is None:
        return []
    batch = results.config.get("batch_size")
    bigger = f"--batch-size {int(batch) * 4}" if isinstance(batch, int) else "a bigger --batch-size"
    word, word_zh = _device_word(dev)
    util, sm = stats.util_mean_pct, stats.sm_active_mean_pct
    if util is not None and util < STARVED_PCT:
        return [Finding(
            "warning", "device-starved",
            f"serial keeps its {word} {dev} busy only {_pct(util)} of the time on average "
            f"({stats.samples} samples; batch size {batch}): it waits on Python and data "
            "between small kernels.",
            f"raise the work per step ({bigger}) or train several clients at once on it "
            "(vectorized mode); compare with `gpubench sweep --batch-size 32,64,128`",
            f"串行时 {word_zh} {dev} 平均只有 {_pct(util)} 的时间在工作（{stats.samples} 个采样；"
            f"批大小 {batch}）：它在小内核之间等待 Python 和数据。",
            f"增加每步的工作量（{bigger}），或在其上同时训练多个客户端（vectorized 模式）；"
            "可用 `gpubench sweep --batch-size 32,64,128` 对比",
        )]
    if sm is not None and sm < SM_STARVED_PCT:
        return [Finding(
            "warning", "device-starved",
            f"serial runs kernels on {dev} {_pct(util or 0)} of the time, but they keep only "
            f"{_pct(sm)} of its SMs busy on average (batch size {batch}): the kernels are too "
            "small for this GPU.",
            f"give each kernel more work ({bigger}) or batch clients together (vectorized mode)",
            f"串行时 {dev} 有 {_pct(util or 0)} 的时间在执行内核，但平均只有 {_pct(sm)} 的 SM "
            f"在工作（批大小 {batch}）：内核对这块 GPU 来说太小。",
            f"让每个内核做更多工作（{bigger}），或把客户端合批（vectorized 模式）",
        )]
    return []


def _cold_start(results: Results) -> list[Finding]:
    parts, parts_zh = [], []
    serial = _ok(results, "serial")
    for mode in results.modes:
        if not mode.ok or not mode.round_times_s or mode.cold_start_s is None:
            continue
        n = len(mode.round_times_s)
        rounds_s = n * (mode.median_round_s or 0.0)
        cold = mode.cold_start_s
        if cold < MIN_COLD_START_S or cold <= rounds_s:
            continue
        ratio = cold / rounds_s if rounds_s > 0 else float("inf")
        each = _s(mode.median_round_s or 0.0)
        part = f"{mode.name} {_s(cold)} vs {n} × {each} = {_s(rounds_s)} ({ratio:.1f}x)"
        part_zh = f"{mode.name} 冷启动 {_s(cold)}，{n} 轮 × {each} = {_s(rounds_s)}（{ratio:.1f} 倍）"
        if serial is not None and serial.median_round_s and mode.median_round_s:
            gain = serial.median_round_s - mode.median_round_s
            extra = cold - (serial.cold_start_s or 0.0)
            if gain > 0:
                even = extra / gain
                part += f", repaid after {even:.0f} rounds"
                part_zh += f"，{even:.0f} 轮后收回"
        parts.append(part)
        parts_zh.append(part_zh)
    if not parts:
        return []
    return [Finding(
        "warning", "cold-start-dominates",
        "cold start outweighs the measured rounds: " + "; ".join(parts) + ".",
        "round speedups are steady-state; a short FL run pays start-up (spawn, imports, CUDA "
        "context) in full, so keep worker pools alive across rounds and count start-up in "
        "any end-to-end comparison",
        "冷启动超过了所测轮次的总时间：" + "；".join(parts_zh) + "。",
        "每轮加速比是稳态数值；轮数少的联邦训练要完整承担启动开销（进程创建、导入、CUDA 上下文），"
        "因此应在各轮之间复用工作进程，并在端到端比较中计入启动时间",
    )]


def _device_train_times(mode: ModeResult) -> dict[str, float]:
    """Seconds of client training per device, summed over the measured rounds."""
    per = {d: 0.0 for d in mode.devices}
    for r in mode.rounds:
        if r.warmup:
            continue
        for c in r.clients:
            per[c.device] = per.get(c.device, 0.0) + c.train_s
    return per


def _unbalanced(results: Results) -> list[Finding]:
    out = []
    for mode in results.modes:
        if not mode.ok or len(mode.devices) < 2:
            continue
        per = _device_train_times(mode)
        total = sum(per.values())
        if total <= 0:
            continue
        mean = total / len(per)
        busiest = max(per, key=lambda d: per[d])
        ratio = per[busiest] / mean
        if ratio <= UNBALANCED:
            continue
        rounds = sum(1 for r in mode.rounds if not r.warmup) or 1
        counts = {d: 0 for d in per}
        for r in mode.rounds:
            if not r.warmup:
                for c in r.clients:
                    counts[c.device] = counts.get(c.device, 0) + 1
        shares = ", ".join(
            f"{d} {_s(per[d] / rounds)} ({counts[d] // rounds} clients)" for d in per
        )
        assign = results.config.get("assign")
        if assign == "balanced":
            hint = ("the clients cannot be split evenly over the devices: use a number of "
                    "similar-sized clients that is a multiple of the devices")
            hint_zh = "客户端无法均匀分到各设备：请使用数量为设备数倍数、大小相近的客户端"
        elif assign == "dynamic":
            hint = ("the clients cannot be split evenly: use more, smaller clients, so the last "
                    "ones on the queue finish closer together")
            hint_zh = "客户端无法均匀分配：使用更多、更小的客户端，让队列末尾的客户端更接近同时完成"
        else:
            hint = (f"--assign balanced (longest client first onto the least-loaded device) "
                    f"instead of {assign or 'round-robin'}; --assign dynamic (a shared queue) "
                    f"when the devices differ in speed")
            hint_zh = (f"改用 --assign balanced（最长的客户端优先分给负载最轻的设备），"
                       f"而不是 {assign or 'round-robin'}；若各设备速度不同，使用 --assign dynamic（共享队列）")
        out.append(Finding(
            "warning", "unbalanced-devices",
            f"{mode.name}: devices got unequal work; client training per round: {shares}; "
            f"the busiest ({busiest}) has {ratio:.2f}x the mean, and the round waits for it.",
            hint,
            f"{mode.name}：各设备的工作量不均；每轮客户端训练时间：{shares}；"
            f"最忙的设备（{busiest}）是平均值的 {ratio:.2f} 倍，整轮都要等它。",
            hint_zh,
        ))
    return out


def _result_differs(results: Results) -> list[Finding]:
    out = []
    tolerance = results.config.get("tolerance_used")
    tol = f"{tolerance:.0e}" if isinstance(tolerance, (int, float)) else "?"
    for mode in results.modes:
        if mode.same_result is not False:
            continue
        diff = mode.max_abs_diff_vs_serial
        d = f"{diff:.1e}" if diff is not None else "?"
        out.append(Finding(
            "problem", "result-differs",
            f"{mode.name}: its FedAvg result differs from serial's by up to {d} (tolerance "
            f"{tol}): it did not do the same work, so its time is not comparable.",
            "check that the mode trains every client on the same data and seeds; raise "
            "--tolerance only for known numerical noise (e.g. cuDNN's atomic adds)",
            f"{mode.name}：其 FedAvg 结果与串行相差最多 {d}（容差 {tol}）："
            "它没有完成相同的计算，因此其耗时不可比较。",
            "检查该模式是否用相同的数据和随机种子训练了每个客户端；只有对已知的数值噪声"
            "（如 cuDNN 的原子加法）才放宽 --tolerance",
        ))
    return out


def _spread(results: Results) -> list[Finding]:
    parts, parts_zh = [], []
    for mode in results.modes:
        if not mode.ok or len(mode.round_times_s) < 2:
            continue
        s = summarize(mode.round_times_s)
        if s.noisy:
            parts.append(
                f"{mode.name} {s.spread * 100:.1f}% (IQR {_s(s.iqr)}, median {_s(s.median)}, "
                f"{s.n} rounds)"
            )
            parts_zh.append(
                f"{mode.name} {s.spread * 100:.1f}%（IQR {_s(s.iqr)}，中位数 {_s(s.median)}，"
                f"{s.n} 轮）"
            )
    if not parts:
        return []
    rounds = results.config.get("rounds")
    more = f"--rounds {max(int(rounds) * 3, 10)}" if isinstance(rounds, int) else "more --rounds"
    hint, hint_zh = f"{more}", f"{more}"
    if not results.config.get("interleave"):
        hint += "; --interleave so that drift hits every mode alike"
        hint_zh += "；加 --interleave 让漂移同等地影响每种模式"
    hint += "; close other programs using the devices"
    hint_zh += "；关闭占用这些设备的其他程序"
    limit = _pct(NOISY_SPREAD * 100)
    return [Finding(
        "warning", "wide-spread",
        f"round times spread too widely to trust (IQR/median over {limit}): " + "; ".join(parts) + ".",
        hint,
        f"各轮耗时波动过大，结果不可信（IQR/中位数超过 {limit}）：" + "；".join(parts_zh) + "。",
        hint_zh,
    )]


def _scaling(results: Results) -> list[Finding]:
    out = []
    for name in MULTI_DEVICE_MODES:
        mode = _ok(results, name)
        if mode is None or len(mode.devices) < 2 or mode.median_round_s is None:
            continue
        sp = _speedup(results, mode)
        if sp is None:
            continue
        k = len(mode.devices)
        eff = sp / k
        nums = f"{_x(sp)} vs serial on {k} devices, {_pct(eff * 100)} of the ideal {k}x"
        nums_zh = f"在 {k} 个设备上相对串行 {_x(sp)}，为理想值 {k}x 的 {_pct(eff * 100)}"
        if eff >= GOOD_SCALING:
            out.append(Finding(
                "info", "scaling-good", f"{name} scales: {nums}.", "",
                f"{name} 扩展良好：{nums_zh}。", "",
            ))
            continue
        if eff >= POOR_SCALING:
            continue
        en, zh = f"{name} scales poorly: {nums}", f"{name} 扩展性差：{nums_zh}"
        per = _device_train_times(mode)
        rounds = sum(1 for r in mode.rounds if not r.warmup)
        if rounds and any(per.values()):
            busiest = max(per.values()) / rounds
            rest = max(mode.median_round_s - busiest, 0.0)
            share = rest / mode.median_round_s
            en += (f"; of its {_s(mode.median_round_s)} round the busiest device trained for "
                   f"{_s(busiest)}, the other {_s(rest)} ({_pct(share * 100)}) is transfer, "
                   "FedAvg and waiting")
            zh += (f"；每轮 {_s(mode.median_round_s)} 中最忙的设备训练了 {_s(busiest)}，"
                   f"其余 {_s(rest)}（{_pct(share * 100)}）是传输、FedAvg 和等待")
        out.append(Finding(
            "warning", "scaling-poor", en + ".",
            "give each round more work per device (more samples per client, more clients, a "
            "bigger model) so fixed per-round costs matter less; if the devices are unbalanced, "
            "--assign balanced",
            zh + "。",
            "让每轮每个设备有更多工作（每个客户端更多样本、更多客户端、更大的模型），"
            "以摊薄每轮的固定开销；若各设备负载不均，使用 --assign balanced",
        ))
    return out


def _vectorized(results: Results) -> list[Finding]:
    """What batching the clients into one computation did, against serial."""
    serial, mode = _ok(results, "serial"), _ok(results, "vectorized")
    if serial is None or mode is None:
        return []
    sp = _speedup(results, mode)
    if sp is None or SLOWER <= sp < NO_FASTER:
        return []
    nums, nums_zh = _versus_serial(serial, mode, sp)
    total = results.config.get("clients")
    clients = f"{total} clients" if total else "the clients"
    clients_zh = f"{total} 个客户端" if total else "各客户端"
    cpu = all(_is_cpu(d) for d in mode.devices)
    if sp >= NO_FASTER:
        return [Finding(
            "info", "vectorized-faster",
            f"vectorized: {clients} trained as one batched computation per device: {nums}. "
            "One client's steps leave the device underused (small kernels, or, on a CPU slot, "
            "matrix products too small to keep its cores busy); the batched steps fill it.",
            "clients that do not fit one vmap can be split over devices (multi-gpu); BatchNorm "
            "layers must become GroupNorm (or track_running_stats=False) to be vectorized",
            f"vectorized：每个设备把{clients_zh}作为一个批量计算来训练：{nums_zh}。单个客户端的"
            "步骤无法充分利用设备（内核太小，或在 CPU 槽上矩阵乘太小、占不满各核心），批量计算填满了它。",
            "一个 vmap 放不下的客户端可以分到多个设备（multi-gpu）；BatchNorm 层需改为 GroupNorm"
            "（或 track_running_stats=False）才能向量化",
        )]
    why = (
        "on a CPU slot, all clients' activations at once can outgrow the caches that one "
        "client's fit in (memory bandwidth then sets the pace), and vmapped convolutions run "
        "as grouped convolutions, which CPUs run slower than separate ones; on a GPU the "
        "same model usually gains"
        if cpu
        else "the batched kernels are already large enough per client, or the stacked models "
        "and their activations no longer fit the device's caches and memory well"
    )
    why_zh = (
        "在 CPU 槽上，所有客户端同时的激活值可能超出单个客户端能放下的缓存（此时由内存带宽决定速度），"
        "且 vmap 后的卷积以分组卷积执行，CPU 上比分开的卷积更慢；在 GPU 上同一模型通常会变快"
        if cpu
        else "每个客户端的内核已经足够大，或者堆叠的模型及其激活值已无法很好地放进设备的缓存和显存"
    )
    return [Finding(
        "warning", "vectorized-slower",
        f"vectorized is slower than serial: {nums}.",
        f"{why}; run serial or multi-gpu for this model"
        + ("" if cpu else ", or fewer clients per device"),
        f"vectorized 比串行更慢：{nums_zh}。",
        f"{why_zh}；此模型请使用串行或 multi-gpu" + ("" if cpu else "，或减少每个设备上的客户端"),
    )]


def _cpu_slots(results: Results) -> list[Finding]:
    devices = results.config.get("device_ids") or [d.get("id") for d in results.devices]
    if not devices or not all(isinstance(d, str) and _is_cpu(d) for d in devices):
        return []
    cores = [d.get("cores") for d in results.devices if isinstance(d, dict)]
    layout = " | ".join(",".join(str(c) for c in cs) for cs in cores if cs)
    detail = f" (cores {layout})" if layout else ""
    detail_zh = f"（核心 {layout}）" if layout else ""
    return [Finding(
        "info", "cpu-slots",
        f"this run used {len(devices)} CPU slot(s){detail} in place of GPUs: the modes compare "
        "the same way, but absolute times and utilisation are CPU numbers.",
        "run on a machine with CUDA GPUs for GPU numbers (`gpubench doctor` says what it sees)",
        f"本次运行用 {len(devices)} 个 CPU 槽{detail_zh}代替 GPU：各模式之间的比较方式相同，"
        "但绝对时间和利用率是 CPU 的数值。",
        "在有 CUDA GPU 的机器上运行以得到 GPU 数值（`gpubench doctor` 会显示它看到的设备）",
    )]


RULES: tuple[Callable[[Results], list[Finding]], ...] = (
    _result_differs,
    _threads_slower,
    _processes_time_sliced,
    _one_device_faster,
    _device_starved,
    _vectorized,
    _unbalanced,
    _scaling,
    _cold_start,
    _spread,
    _cpu_slots,
)


def compute_findings(results: Results) -> list[Finding]:
    """Every finding the run's numbers support: problems first, then warnings, then info."""
    found = [f for rule in RULES for f in rule(results)]
    return sorted(found, key=lambda f: LEVELS.index(f.level) if f.level in LEVELS else len(LEVELS))


def format_findings(findings: Sequence[Finding], lang: str = "en") -> str:
    """Findings as terminal text; empty string when there are none."""
    if not findings:
        return ""
    labels = {"problem": ("PROBLEM", "问题"), "warning": ("warning", "警告"), "info": ("info", "信息")}
    zh = lang == "zh"
    lines = ["诊断结论：" if zh else "Findings:"]
    for f in findings:
        message, hint = f.text(lang)
        label = labels.get(f.level, (f.level, f.level))[1 if zh else 0]
        lines.append(f"- {label} [{f.code}] {message}")
        if hint:
            lines.append(f"  {'建议' if zh else 'hint'}: {hint}")
    return "\n".join(lines)
