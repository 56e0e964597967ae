"""``gpubench doctor`` in words: the machine the doctor saw, then its findings."""

from __future__ import annotations

from typing import Any

from gpubench.findings import Finding
from gpubench.report.findings import finding_record, format_findings
from gpubench.report.i18n import check_lang, text


def _onoff(value: Any, lang: str) -> str:
    return "—" if value is None else text("word.on" if value else "word.off", lang)


def _driver(nvml: dict[str, Any], lang: str) -> str:
    out = ""
    if nvml.get("nvidia_driver_version"):
        out += text("doctor.driver", lang, version=nvml["nvidia_driver_version"])
    if nvml.get("cuda_driver_version"):
        out += text("doctor.cuda_driver", lang, version=nvml["cuda_driver_version"])
    return out


def _machine_lines(report: dict[str, Any], lang: str) -> list[str]:
    t, cpu, nvml = report["torch"], report["cpu"], report["nvml"]
    shm, env = report["shared_memory"], report["environment"]
    build = (text("doctor.build.cuda", lang, cuda=t["torch_cuda"]) if t.get("torch_cuda")
             else text("doctor.build.cpu", lang))
    binding = " ".join(str(v) for v in (nvml.get("binding"), nvml.get("binding_version")) if v)
    unset = text("doctor.unset", lang)
    lines = [
        text("doctor.header", lang, version=report["gpubench"],
             python=report["python"]["version"], platform=report["platform"]),
        text("doctor.cpu", lang, model=cpu["model"] or "?", count=cpu["count"],
             usable=cpu["usable"], affinity=",".join(str(c) for c in cpu["affinity"])),
        text("doctor.torch", lang, torch=t.get("torch"), build=build,
             threads=t.get("torch_threads"), cudnn=t.get("cudnn") or "—"),
        text("doctor.flags", lang, benchmark=_onoff(t.get("cudnn_benchmark"), lang),
             deterministic=_onoff(t.get("cudnn_deterministic"), lang),
             tf32_matmul=_onoff(t.get("tf32_matmul"), lang),
             tf32_cudnn=_onoff(t.get("tf32_cudnn"), lang)),
        text("doctor.env", lang, variables=", ".join(
            f"{k}={v if v is not None else unset}" for k, v in env.items())),
        text("doctor.nvml.available" if nvml.get("available") else "doctor.nvml.missing", lang,
             binding=binding or "—", driver=_driver(nvml, lang)),
        text("doctor.mps.running" if report["mps"]["running"] else "doctor.mps.stopped", lang),
        text("doctor.shm", lang, total=shm["total_bytes"], free=shm.get("free_bytes"))
        if shm.get("total_bytes") is not None else text("doctor.shm_unreadable", lang),
    ]
    gpus = [g for g in report["gpus"] if "error" not in g]
    if not gpus:
        lines.append(text("doctor.no_gpus", lang))
    for g in gpus:
        lines.append(text(
            "doctor.gpu", lang, id=g["id"], name=g.get("name"),
            memory=g.get("memory_total_bytes") or None,
            compute_mode=g.get("compute_mode") or "?", mig=_onoff(g.get("mig_mode"), lang),
            uuid=g.get("uuid") or "",
        ))
    return lines


def doctor_findings(report: dict[str, Any]) -> list[Finding]:
    return [Finding.from_dict(f) for f in report.get("findings") or []]


def format_doctor(report: dict[str, Any], lang: str = "en") -> str:
    """The doctor's report for a terminal."""
    check_lang(lang)
    findings = format_findings(doctor_findings(report), lang)
    return "\n".join(_machine_lines(report, lang)) + ("\n\n" + findings if findings else "")


def doctor_json(report: dict[str, Any], lang: str = "en") -> dict[str, Any]:
    """The doctor's report for ``--json``: each finding by code, with its facts and words."""
    check_lang(lang)
    return {**report, "findings": [finding_record(f, lang) for f in doctor_findings(report)]}
