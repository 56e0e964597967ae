"""The FAQ pages: one markdown page per language, with its plots beside it.

``format_faq`` turns the answers (and the plots already drawn) into text and nothing else;
``write_faq`` draws the plots and writes ``faq.<lang>.md``. All wording comes from
:mod:`gpubench.report.faq_text`; numbers come from :mod:`gpubench.faq`. No torch.

A page opens with *what to run on this machine* (:func:`format_what_to_run`): the fastest mode
of the comparison that computed serial's result with no other program's load, its speedup as
the tables show it, the measured ``client_resources`` and the modes that did not help, each
linked to the answer or table below that is its evidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpubench import stats
from gpubench.faq import memory
from gpubench.faq.inputs import FaqInputs
from gpubench.faq.verdicts import (
    BELIEFS,
    DOES_NOT_HOLD,
    HOLDS,
    LEVEL,
    MIN_SEEDS,
    NOT_MEASURED,
    Answer,
    Part,
    answer_beliefs,
    run_devices,
)
from gpubench.findings import Finding
from gpubench.output import write_atomic
from gpubench.report import faq_clients, faq_plots, measures, tables
from gpubench.report.faq_text import faq_text as t
from gpubench.report.findings import MODE_FACTS
from gpubench.report.i18n import LANGS, check_lang, device_label, mode_label, text
from gpubench.report.plots import Plot
from gpubench.report.provenance import gpu_names, provenance_section
from gpubench.results import STATUS_FAILED, Disturbance, ModeResult, Results

PAGE_STEM = "faq"
# In-page anchors: each piece of advice links to the answer or table that is its evidence.
RUN_ANCHOR, PERFORMANCE_ANCHOR, CLIENTS_ANCHOR = "what-to-run", "performance", "clients"
# The mode each belief measures against serial (its answer is that mode's evidence).
BELIEF_OF_MODE = {"threaded": "threads", "multiprocess": "processes", "multi-gpu": "multi-gpu"}


def anchor(name: str) -> str:
    return f'<a id="{name}"></a>'


def belief_anchor(belief: str) -> str:
    return f"belief-{belief}"


def _label(key: str, lang: str) -> str:
    return f"**{t(key, lang)}{'：' if lang == 'zh' else ':'}**"


def _x(v: float) -> str:
    return f"{v:.2f}x"


def _gib(n: float | None) -> str:
    return measures.format_bytes(int(n)) if n is not None else "—"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}%"


def _limit(part: Part, lang: str) -> str:
    c = part.claim
    fmt = (lambda v: _gib(v * 2e9)) if part.key == "process-memory" else _x
    if c.low is not None and c.high is not None:
        text = t("limit.within", lang, low=fmt(c.low), high=fmt(c.high))
    elif c.high is not None:
        text = t("limit.below", lang, high=fmt(c.high))
    else:
        text = t("limit.above", lang, low=fmt(c.low or 0.0))
    why = t(f"limit.why.{part.key}", lang)
    return f"{text}（{why}）" if lang == "zh" else f"{text} ({why})"


def _part_name(part: Part, lang: str) -> str:
    f = dict(part.facts)
    devices = f.get("devices") or [f.get("device") or "?"]
    cpu = str(devices[0]).startswith("cpu")
    values = {"workers": f.get("workers", "?"), "device": device_label(str(devices[0]), lang),
              "memory": memory_word(cpu, lang),
              "mode": mode_label(str(f.get("mode") or part.key.split("-vs-")[0]), lang,
                                 cpu_slots=cpu),
              "k": f.get("k") or "k", "from": f.get("from", 32), "to": f.get("to", 128),
              "processes": f.get("processes", 0), "median": _gib(f.get("median_bytes"))}
    return t(f"part.{part.key}", lang, **values)


def memory_word(cpu: bool, lang: str) -> str:
    """The glossary's name for a process's memory: resident (host) memory on CPU slots,
    device memory (显存) on GPUs only."""
    return text("glossary.memory.host" if cpu else "glossary.memory.device", lang)


def format_interval(part: Part) -> str:
    """A part's ratio as the tables show it (``measures.format_ratio``: same digits, same
    interval), memory in bytes."""
    i = part.interval
    if i is None:
        return "—"
    if part.key == "process-memory":
        return f"{_gib(i.estimate * 2e9)} [{_gib(i.low * 2e9)}, {_gib(i.high * 2e9)}]"
    return measures.format_ratio(i.estimate, i)


def _measured(part: Part, lang: str) -> str:
    colon, semi = ("：", "；") if lang == "zh" else (": ", "; ")
    line = f"{_part_name(part, lang)}{colon}**{format_interval(part)}**{semi}{_limit(part, lang)}"
    line += f" — **{t(f'verdict.{part.verdict}', lang)}**"
    if part.reason is not None:
        error = (part.facts.get("error") or "").splitlines()[0:1]
        facts = {k: v for k, v in part.facts.items() if k != "error"}
        for k in MODE_FACTS:  # a mode a reason names, by the glossary's name
            if isinstance(facts.get(k), str):
                facts[k] = mode_label(facts[k], lang, cpu_slots=str(facts.get("device",
                                                                            "")).startswith("cpu"))
        line += f"{colon}{t(f'reason.{part.reason}', lang, **facts, error=error[0] if error else '?')}"
    elif part.verdict not in (HOLDS, DOES_NOT_HOLD):
        line += f"{colon}{t('straddles', lang)}"
    return line


def _util_words(facts: Mapping[str, Any], lang: str) -> str:
    utils = facts.get("device_util") or {}
    busy = "busy" if lang == "en" else "工作"
    return ", ".join(f"{device_label(d, lang)} {busy} {_pct(u)}" for d, u in utils.items()) or "—"


def _why(answer: Answer, inputs: FaqInputs, lang: str) -> list[str]:
    part = answer.parts[0]
    f = dict(part.facts)
    device = device_label(str((f.get("devices") or ["?"])[0]), lang)
    if answer.belief in ("threads", "processes"):
        util = f.get("serial_util")
        if util is None:
            return []
        kind = "busy" if util >= 50 else "host"
        return [t(f"why.{answer.belief}.{kind}", lang, device=device, util=_pct(util))]
    if answer.belief == "multi-gpu":
        if part.reason == "one-device":
            return [t("why.multi-gpu.none", lang)]
        if part.interval is None:
            return []
        kind = "good" if part.verdict == HOLDS else "poor"
        return [t(f"why.multi-gpu.{kind}", lang, util=_util_words(f, lang), k=f.get("k"))]
    if answer.belief == "batch":
        return _why_batch(part, lang, inputs.cpu_slots)
    return _why_memory(inputs, lang)


def _why_batch(part: Part, lang: str, cpu: bool) -> list[str]:
    f = dict(part.facts)
    if "from" not in f:
        return []
    steps = f["to"] / f["from"]
    sizes = {"from": f["from"], "to": f["to"]}
    # On a CPU slot there are no kernel launches to save: say what the slot measured.
    key = "why.batch.cpu" if cpu else "why.batch"
    out = [t(key, lang, steps=f"{steps:.3g}", util_from=_pct(f.get("util_from")),
             util_to=_pct(f.get("util_to")), **sizes)]
    a, b = f.get("accuracy_from"), f.get("accuracy_to")
    if a and b and "mean" in a and "mean" in b:
        out.append(t("why.accuracy", lang, seeds=min(a["seeds"], b["seeds"]), last=a["last"],
                     rounds=a.get("rounds"), acc_from=f"{a['mean']:.2f} ± {a['sd']:.2f}",
                     acc_to=f"{b['mean']:.2f} ± {b['sd']:.2f}",
                     steps_from=f"{a.get('local_steps') or 0:.3g}",
                     steps_to=f"{b.get('local_steps') or 0:.3g}", **sizes))
    elif a and b:
        out.append(t("why.accuracy.few_seeds", lang, seeds=min(a["seeds"], b["seeds"]),
                     min_seeds=MIN_SEEDS, **sizes))
    else:
        out.append(t("why.accuracy.missing", lang, min_seeds=MIN_SEEDS, **sizes))
    return out


def _why_memory(inputs: FaqInputs, lang: str) -> list[str]:
    procs = memory.measured_processes(inputs)
    split = [p for p in sorted(procs, key=lambda p: not p.fresh)
             if p.context_bytes is not None and p.allocated_bytes is not None]
    if split:
        p = split[0]
        return [t("why.memory.gpu", lang, total=_gib(p.total_bytes), reserved=_gib(p.reserved_bytes),
                  allocated=_gib(p.allocated_bytes), context=_gib(p.context_bytes))]
    return [t("why.memory.cpu", lang)] if procs else []


def _findings(found: Sequence[Finding], lang: str) -> list[str]:
    from gpubench.report.findings import finding_text

    return [f"- {finding_text(f, lang)[0]}" for f in found]


def format_answer(index: int, answer: Answer, inputs: FaqInputs, lang: str,
                  plots: Mapping[str, Plot]) -> str:
    b = answer.belief
    on_this = f"（{t('on_this', lang)}）" if lang == "zh" else f" ({t('on_this', lang)})"
    lines = [anchor(belief_anchor(b)), "", f"## {index}. {t(f'q.{b}', lang)}", "",
             f"{_label('label.belief', lang)} {t(f'b.{b}', lang)}", "",
             f"{_label('label.verdict', lang)} **{t(f'verdict.{answer.verdict}', lang)}**"
             f"{on_this}", ""]
    lines += [_label("label.measured", lang), ""]
    lines += [f"- {_measured(p, lang)}" for p in answer.parts] + [""]
    why = _why(answer, inputs, lang)
    if why:
        lines += [f"{_label('label.why', lang)} " + ("" if lang == "zh" else " ").join(why), ""]
    if answer.findings:
        lines += [_label("label.findings", lang), "", *_findings(answer.findings, lang), ""]
    lines += [f"{_label('label.instead', lang)} {t(f'instead.{b}', lang)}", ""]
    if b == "memory":
        lines += format_memory(inputs, lang)
    for key in faq_plots.PLOTS_OF.get(b, ()):
        if key in plots:
            lines += [_plot_link(plots[key], lang), ""]
    if answer.command:
        lines += [_label("label.reproduce", lang), "", f"```\n{answer.command}\n```", ""]
    return "\n".join(lines).rstrip()


def _plot_link(plot: Plot, lang: str) -> str:
    if plot.path is not None:
        return f"![{plot.title}]({plot.path.name})"
    return f"*{t('plot.missing', lang, plot=plot.title, reason=plot.reason)}*"


# --- the memory answer --------------------------------------------------------------------


def format_memory(inputs: FaqInputs, lang: str) -> list[str]:
    procs = memory.measured_processes(inputs)
    if not procs:
        return [t("mem.none", lang), ""]
    cpu = inputs.cpu_slots
    headers = [t(f"mem.col.{k}", lang)
               for k in ("process", "clients", "batch", "total", "tensors", "cache", "context", "source")]
    parent = f"{'' if lang == 'zh' else ' '}{t('mem.parent.mark', lang)}"
    rows = [[f"{mode_label(p.mode, lang, cpu_slots=cpu)} · {device_label(p.device, lang)}"
             f"{'' if p.fresh else parent}",
             str(p.clients or "—"), str(p.batch_size or "—"), _gib(p.total_bytes),
             _gib(p.allocated_bytes), _gib(p.cache_bytes), _gib(p.context_bytes),
             t(f"mem.source.{p.source}", lang)] for p in procs]
    out = [f"**{t('mem.processes', lang)}**", "", tables.render(rows, headers, "github"), ""]
    if any(not p.fresh for p in procs):
        out += [t("mem.parent", lang, memory=memory_word(cpu, lang)), ""]
    per = memory.per_client_bytes(procs)
    out += [t("mem.per_client", lang, per=_gib(per)) if per else t("mem.per_client.none", lang), ""]
    out += [_per_batch_line(procs, lang), ""]
    workers = [p for p in procs if p.fresh]
    fits = memory.fits(inputs, memory.median_total(workers))
    if not fits:
        return [*out, t("mem.fits.none", lang), ""]
    clients = int((inputs.comparison or inputs.runs[0]).config.clients or 1)
    headers = [t(f"mem.col.{k}", lang, clients=clients)
               for k in ("device", "memory", "per_process", "fit", "num_gpus")]
    rows = [[device_label(f.device, lang), _gib(f.total_bytes), _gib(f.per_process_bytes),
             str(f.processes), f"{f.num_gpus:g}"] for f in fits]
    out += [f"**{t('mem.fits', lang)}**", "", tables.render(rows, headers, "github"), ""]
    out += [t("mem.ray", lang, num_gpus=f"{fits[0].num_gpus:g}", clients=clients, k=len(fits),
              smallest=f"{fits[0].fill_first:g}"), ""]
    out[-2:] = faq_clients.num_gpus_advice(inputs, lang, out[-2:-1])  # measured, if swept
    return out


def _per_batch_line(procs: Sequence[memory.ProcessMemory], lang: str) -> str:
    """Memory per batch size from fresh processes only; where only the parent's rows differ
    in batch size, that they are not such a figure."""
    fresh = memory.per_batch(procs)
    if len(fresh) < 2:
        parent = {p.batch_size for p in procs if not p.fresh and p.batch_size}
        return t("mem.per_batch.parent" if len(parent) >= 2 else "mem.per_batch.none", lang)
    sep = "; " if lang == "en" else "；"
    items = [t("mem.per_batch.item", lang, batch=b, total=_gib(memory.median_total(ps)),
               tensors=_gib(memory.median([p.allocated_bytes for p in ps])), processes=len(ps))
             for b, ps in fresh.items()]
    return t("mem.per_batch", lang, items=sep.join(items))


# --- the performance table ----------------------------------------------------------------


def _mode_memory(results: Results, mode: ModeResult, device: str) -> str:
    procs = [p for p in memory.processes(results, (mode.name,)) if p.device == device]
    if not procs:
        return "—"
    total = sum(p.total_bytes for p in procs)
    floor = "≥ " if any(p.source == "allocator" for p in procs) else ""
    return floor + _gib(total)


def _processes_memory(results: Results, mode: ModeResult) -> str:
    if not mode.ok:
        return "—"
    return " / ".join(_mode_memory(results, mode, d) for d in mode.devices) or "—"


def format_performance(results: Results, lang: str) -> str:
    """The reports' performance table (same speed, verdict and result columns), with the
    memory of the mode's own processes instead of the device's total."""
    cpu = results.on_cpu_slots
    header = text("col.memory_processes_cpu" if cpu else "col.memory_processes", lang)
    table = tables.format_performance_table(results, lang, "github", memory=_processes_memory,
                                            memory_header=header)
    legend = t("performance_legend", lang, what=t("mem_what.cpu" if cpu else "mem_what.gpu", lang))
    marks = tables.marks_legend([results], lang)
    parts = [table, text("page.speed_legend", lang), *([marks] if marks else []), legend]
    return "\n\n".join(parts)


# --- what to run on this machine ------------------------------------------------------------


def mode_speed(results: Results, mode: ModeResult) -> measures.SpeedView:
    """A mode's speed against serial as the tables show it; the section's one call for it."""
    return measures.speed_of(results, mode)


@dataclass(frozen=True)
class RunAdvice:
    """What the comparison says to run: ``best`` is the fastest mode that computed serial's
    result, was not disturbed and is clearly faster than serial (None: serial itself, or
    ``undecided`` when other programs' load disturbed serial's rounds); ``not_helped``: modes
    slower than serial, with another result, or failed; ``not_judged``: modes measured beside
    other programs' load."""

    best: ModeResult | None
    best_speed: measures.SpeedView | None
    undecided: Disturbance | None
    not_helped: tuple[tuple[ModeResult, measures.SpeedView], ...]
    not_judged: tuple[tuple[ModeResult, measures.SpeedView], ...]


def what_to_run(results: Results | None) -> RunAdvice | None:
    """The advice from one comparison; None when serial was not measured (nothing to divide by)."""
    serial = results.mode("serial") if results is not None else None
    if results is None or serial is None or not serial.ok or not serial.round_times_s:
        return None
    speeds = [(m, mode_speed(results, m)) for m in results.modes if m.name != serial.name]
    correct = [(m, s) for m, s in speeds
               if s.verdict == measures.FASTER and s.check == measures.CHECK_SAME
               and results.disturbance(m.name) is None]
    best = max(correct, key=lambda ms: ms[1].estimate or 0.0, default=None)
    not_helped = tuple((m, s) for m, s in speeds
                       if m.status == STATUS_FAILED or s.check == measures.CHECK_DIFFERS
                       or s.verdict == measures.SLOWER_V)
    not_judged = tuple((m, s) for m, s in speeds if s.verdict == measures.BUSY)
    return RunAdvice(best[0] if best else None, best[1] if best else None,
                     results.disturbance(serial.name), not_helped, not_judged)


def _evidence(name: str, lang: str) -> str:
    """Links to what shows ``name``'s speed: the performance table, and its belief's answer."""
    links = [f"[{t('run.link.table', lang)}](#{PERFORMANCE_ANCHOR})"]
    belief = BELIEF_OF_MODE.get(name)
    if belief is not None:
        links.append(f"[{t('run.link.answer', lang, n=BELIEFS.index(belief) + 1)}]"
                     f"(#{belief_anchor(belief)})")
    return text("list.sep", lang).join(links)


def _in_brackets(words: str, lang: str) -> str:
    return f"（{words}）" if lang == "zh" else f" ({words})"


def _mode_words(mode: ModeResult, lang: str, cpu: bool) -> str:
    label = mode_label(mode.name, lang, cpu_slots=cpu, devices=len(mode.devices) or None)
    sep = "、" if lang == "zh" else ", "
    devices = sep.join(device_label(d, lang) for d in mode.devices) or "?"
    per_device = f"{mode.workers / max(len(mode.devices), 1):g}"
    return t("run.mode", lang, mode=label, per_device=per_device, devices=devices)


def _run_lines(advice: RunAdvice, results: Results, lang: str) -> list[str]:
    cpu = results.on_cpu_slots
    if advice.best is not None and advice.best_speed is not None:
        run = _mode_words(advice.best, lang, cpu)
        evidence = _evidence(advice.best.name, lang)
        speed = t("run.speedup", lang, ratio=measures.format_speedup(advice.best_speed),
                  level=f"{LEVEL * 100:.0f}")
    elif advice.undecided is not None:
        d = advice.undecided
        run = t("run.undecided", lang, other_pct=d.pct, device=device_label(d.device, lang),
                during=mode_label(d.mode, lang, cpu_slots=cpu), who=d.who() or "?")
        evidence, speed = _evidence(d.mode, lang), t("verdict.inconclusive", lang)
    else:
        serial = results.mode("serial")
        assert serial is not None  # what_to_run gave advice: serial was measured
        run = t("run.serial", lang, mode=_mode_words(serial, lang, cpu),
                limit=_x(stats.FASTER))
        evidence, speed = _evidence(serial.name, lang), t("run.speedup.serial", lang)
    return [f"- {_label('run.label.mode', lang)} {run}{_in_brackets(evidence, lang)}",
            f"- {_label('run.label.speedup', lang)} {speed}"]


def _mode_item(mode: ModeResult, speed: measures.SpeedView, lang: str, cpu: bool) -> str:
    """A mode that did not help (or was not judged): why, with its evidence."""
    label = mode_label(mode.name, lang, cpu_slots=cpu, devices=len(mode.devices) or None)
    if mode.status == STATUS_FAILED:
        why = t("run.failed", lang, error=(mode.error or "?").splitlines()[0])
    elif speed.check == measures.CHECK_DIFFERS:
        why = t("run.differs", lang)
    elif speed.verdict == measures.BUSY:
        why = t("run.busy", lang, ratio=measures.format_speedup(speed))
    else:
        why = t("run.slower", lang, ratio=measures.format_speedup(speed))
    colon = "：" if lang == "zh" else ": "
    return f"  - {label}{colon}{why}{_in_brackets(_evidence(mode.name, lang), lang)}"


def _resources_line(inputs: FaqInputs, lang: str) -> str:
    found = next(((s, k) for s in faq_clients.sweeps_of(inputs)
                  if (k := faq_clients.advice_knee(s))), None)
    link = f"[{text('clients.title', lang)}](#{CLIENTS_ANCHOR})"
    if found is None:
        words = t("run.resources.none", lang, link=link)
    else:
        summary, (name, knee, resources) = found
        cpu = summary.per_device is not None and summary.per_device.cpu_slots
        words = t("run.resources", lang, resources=resources.as_argument(),
                  mode=mode_label(name, lang, cpu_slots=cpu), k=knee.value, link=link)
    return f"- {_label('run.label.resources', lang)} {words}"


def format_what_to_run(inputs: FaqInputs, lang: str) -> list[str]:
    """The page's first section (markdown blocks, its anchor and heading first): the fastest
    mode that computed serial's result on an undisturbed machine, its speedup, the measured
    ``client_resources``, and what did not help, each linked to its evidence below."""
    out = [anchor(RUN_ANCHOR), f"## {t('run.title', lang)}"]
    advice = what_to_run(inputs.comparison)
    if advice is None or inputs.comparison is None:
        nothing = f"**{t(f'verdict.{NOT_MEASURED}', lang)}**"
        lines = [f"- {_label(f'run.label.{k}', lang)} {nothing}" for k in ("mode", "speedup")]
        lines += [_resources_line(inputs, lang),
                  f"- {_label('run.label.not_helped', lang)} {nothing}"]
        return [*out, t("run.none", lang), "\n".join(lines)]
    cpu = inputs.comparison.on_cpu_slots
    lines = _run_lines(advice, inputs.comparison, lang) + [_resources_line(inputs, lang)]
    helped = [_mode_item(m, s, lang, cpu) for m, s in advice.not_helped]
    lines.append(f"- {_label('run.label.not_helped', lang)}"
                 + ("" if helped else f" {t('run.not_helped.none', lang)}"))
    lines += helped
    if advice.not_judged:
        lines.append(f"- {_label('run.label.not_judged', lang)}")
        lines += [_mode_item(m, s, lang, cpu) for m, s in advice.not_judged]
    return [*out, t("run.intro", lang), "\n".join(lines)]


# --- the page -------------------------------------------------------------------------------


def _summary(answers: Sequence[Answer], lang: str) -> str:
    headers = ["#", t("col.belief", lang), t("col.verdict", lang),
               t("col.measured", lang, level=f"{LEVEL * 100:.0f}")]
    rows = [[str(i), t(f"short.belief.{a.belief}", lang), t(f"verdict.{a.verdict}", lang),
             text("list.sep", lang).join(format_interval(p) for p in a.parts)]
            for i, a in enumerate(answers, 1)]
    return tables.render(rows, headers, "github")


def format_faq(inputs: FaqInputs, lang: str, plots: Mapping[str, Plot] | None = None) -> str:
    """The whole page in ``lang``; ``plots`` maps plot keys to the plots already drawn."""
    check_lang(lang)
    plots = plots or {}
    answers = answer_beliefs(inputs)
    run = inputs.comparison or next(iter(inputs.runs), None)
    names = sorted({n for r in inputs.runs for n in gpu_names(r)})
    devices = ", ".join(names) or ", ".join(
        device_label(d, lang) for d in run_devices(inputs)) or "?"
    case, clients, samples = ((run.config.case, run.config.clients, run.config.samples_per_client)
                              if run is not None else (None, None, None))
    parts = [f"# {t('title', lang, case=case or '?', devices=devices)}",
             *format_what_to_run(inputs, lang),
             t("intro", lang, case=case or "?", clients=clients or "?",
               samples=samples or "?", level=f"{LEVEL * 100:.0f}")]
    if inputs.cpu_slots:
        parts.append(t("cpu_note", lang))
    parts += [f"## {t('summary', lang)}", _summary(answers, lang)]
    if "verdicts" in plots:
        parts.append(_plot_link(plots["verdicts"], lang))
    if inputs.comparison is not None:
        parts += [f"{anchor(PERFORMANCE_ANCHOR)}\n\n## {t('performance', lang)}",
                  format_performance(inputs.comparison, lang)]
        if "utilisation" in plots:
            parts.append(_plot_link(plots["utilisation"], lang))
    parts += [format_answer(i, a, inputs, lang, plots) for i, a in enumerate(answers, 1)]
    parts += extra_sections(inputs, lang, plots)
    parts += [f"## {t('sources', lang)}", *provenance_section(inputs.labelled_runs, lang),
              "\n".join(f"- `{s}`" for s in inputs.sources) or "—"]
    return "\n\n".join(parts).rstrip() + "\n"


def extra_sections(inputs: FaqInputs, lang: str,
                   plots: Mapping[str, Plot] | None = None) -> list[str]:
    """Sections after the five answers and before the sources (each a markdown block)."""
    return [anchor(CLIENTS_ANCHOR), *faq_clients.format_clients_section(inputs, lang, plots)]


def write_faq(inputs: FaqInputs, out_dir: str | Path, langs: Sequence[str] = LANGS) -> list[Path]:
    """Draw each language's plots and write ``faq.<lang>.md``; return the pages' paths."""
    out = Path(out_dir)
    written = []
    answers = answer_beliefs(inputs)
    for lang in langs:
        check_lang(lang)
        plots = faq_plots.write_faq_plots(inputs, answers, out, f"{PAGE_STEM}.{lang}", lang)
        plots.update(faq_clients.write_clients_plots(inputs, out, f"{PAGE_STEM}.{lang}", lang))
        page = format_faq(inputs, lang, plots)
        written.append(write_atomic(out / f"{PAGE_STEM}.{lang}.md", page))
    return written
