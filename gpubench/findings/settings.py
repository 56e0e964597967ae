"""Whether every process of a mode computed under the parent's torch settings.

A library caller's ``torch.set_float32_matmul_precision("high")`` or ``cudnn.benchmark = True``
reaches the modes that train in the calling process, not a worker process that starts fresh:
the two sides then run other kernels, and a speed ratio between them says so, not the mode.
"""

from __future__ import annotations

from gpubench.findings.base import Facts, Finding
from gpubench.results import Results

CODES: dict[str, tuple[str, ...]] = {"worker-settings": ()}

# What a worker reports (gpubench.machine.isolation.NUMERIC_SETTINGS); thread counts differ
# on purpose (a CUDA worker's share of the cores, a CPU slot's cores) and are not compared.
COMPARED = ("tf32_matmul", "tf32_cudnn", "cudnn_benchmark", "cudnn_deterministic",
            "float32_matmul_precision")


def worker_settings(results: Results) -> list[Finding]:
    out = []
    parent = results.environment
    for mode in results.modes:
        reported = mode.extra.worker_settings or {}
        differ = sorted({
            key for settings in reported.values() for key in COMPARED
            if key in settings and key in parent and settings[key] != parent[key]
        })
        if not differ:
            continue
        worker, settings = next(
            (w, s) for w, s in sorted(reported.items())
            if any(k in s and s[k] != parent[k] for k in differ))
        facts: Facts = {
            "mode": mode.name, "worker": worker, "settings": differ,
            "differ": [{"setting": k, "worker": settings.get(k), "parent": parent.get(k)}
                       for k in differ],
        }
        out.append(Finding("warning", "worker-settings", facts))
    return out


RULES = (worker_settings,)
