"""One Chinese name per mode and per kind of memory, and zh pages without English sentences."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpubench.findings import Finding
from gpubench.report.faq_page import format_faq
from gpubench.report.findings import finding_text
from gpubench.report.i18n import catalogue, mode_label, text
from gpubench.report.page import format_report
from gpubench.results import read_results
from tests.test_faq import cpu_slot_inputs, two_gpu_inputs

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# The glossary: each mode's Chinese name, on GPUs and on CPU slots.
GLOSSARY = {
    "serial": ("串行", "串行"),
    "threaded": ("多线程", "多线程"),
    "multiprocess": ("多进程（单设备）", "多进程（单设备）"),
    "multi-gpu": ("多 GPU（每设备一个进程）", "多 CPU 槽（每设备一个进程）"),
}
# Variants the glossary replaced: never in a zh string.
FORBIDDEN = ("工作者", "单GPU 独立进程", "多GPU 并行", "单GPU 串行", "单GPU 多线程",
             "单GPU 多进程", "单CPU 槽")
# English words that must be translated in zh prose (a mode's CLI name, batch size).
ENGLISH_TERMS = re.compile(r"(?<![\w-])(serial|threaded|multiprocess|multi-gpu|vectorized|streams|"
                           r"batch|worker)(?![\w-])")
# The user's own notes, quoted as written: the beliefs the FAQ tests.
QUOTED = "faq.b."


def _prose(zh: str) -> str:
    """A zh phrase without what is not prose: code spans, placeholders and --flags."""
    return re.sub(r"`[^`]*`|\{[^}]*\}|--[a-z][a-z-]*", "", zh)


def _zh_phrases() -> list[tuple[str, str]]:
    return [(k, zh) for k, (_, zh) in catalogue().items() if not k.startswith(QUOTED)]


def test_the_zh_catalogue_uses_only_the_glossarys_names() -> None:
    bad = [(k, v) for k, zh in _zh_phrases() for v in FORBIDDEN if v in zh]
    assert bad == []
    english = [(k, m.group(0)) for k, zh in _zh_phrases()
               for m in ENGLISH_TERMS.finditer(_prose(zh))]
    assert english == []


@pytest.mark.parametrize("name", sorted(GLOSSARY))
def test_mode_names_are_the_glossarys(name: str) -> None:
    gpu, cpu = GLOSSARY[name]
    assert mode_label(name, "zh") == gpu
    assert mode_label(name, "zh", cpu_slots=True) == cpu


def test_memory_is_device_memory_only_on_gpus() -> None:
    assert text("glossary.memory.device", "zh") == "显存"
    assert text("glossary.memory.host", "zh") == "常驻内存"
    assert text("faq.mem.source.rss", "zh") == "常驻内存"


def test_a_zh_finding_names_its_mode_by_the_glossary() -> None:
    finding = Finding("warning", "busy-machine", {
        "mode": "multiprocess", "during": "multi-gpu", "device": "cpu:1", "other_pct": 40.0,
        "limit_pct": 10.0, "processes": []})
    message, _ = finding_text(finding, "zh")
    assert "多进程（单设备）" in message and "多 CPU 槽（每设备一个进程）" in message
    assert not ENGLISH_TERMS.search(_prose(message))


# Six or more ASCII words in a row: an English sentence left in a zh page.
_ENGLISH_RUN = re.compile(r"[A-Za-z][\w'’./-]*(?:[ ,;:()]+[A-Za-z][\w'’./-]*){5,}")


def english_sentences(page: str, recorded: tuple[str, ...] = ()) -> list[str]:
    """English runs in a zh page, outside code, tables, links, the user's quoted notes (“…”)
    and ``recorded`` messages (a mode's error as its results file holds it: data, quoted)."""
    for message in recorded:
        page = page.replace(message, " ")
    page = re.sub(r"“[^”]*”", " ", page)
    out, fenced = [], False
    for line in page.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith(("|", "![", "<a ", "- `", "#", "$ gpubench")):
            continue
        prose = re.sub(r"`[^`]*`|\]\([^)]*\)|https?://\S+", " ", line)
        out += [m.group(0) for m in _ENGLISH_RUN.finditer(prose)]
    return out


def test_the_heuristic_finds_an_english_sentence() -> None:
    assert english_sentences("结论：the belief holds between two limits here。") == [
        "the belief holds between two limits here"]
    assert english_sentences("运行 `gpubench compare --modes serial,threaded --rounds 5`") == []


@pytest.mark.parametrize("inputs", [two_gpu_inputs, cpu_slot_inputs], ids=["gpus", "slots"])
def test_a_zh_faq_page_has_no_english_sentence(inputs) -> None:  # type: ignore[no-untyped-def]
    page = format_faq(inputs(), "zh")
    assert english_sentences(page) == []
    assert not any(v in re.sub(r"“[^”]*”", "", page) for v in FORBIDDEN)


def test_a_zh_faq_page_on_cpu_slots_never_calls_resident_memory_device_memory() -> None:
    page = format_faq(cpu_slot_inputs(), "zh")
    memory = page.split('<a id="belief-memory"></a>')[1].split('<a id="clients"></a>')[0]
    rows = [line for line in memory.splitlines() if "常驻内存" in line]
    assert rows and not any("显存" in line and "没有显存" not in line for line in rows)


@pytest.mark.parametrize("name", ["report_failed", "report_4gpus", "report_2slots"])
def test_a_zh_report_page_has_no_english_sentence(name: str) -> None:
    results = read_results(FIXTURES / f"{name}.json")
    page = format_report([(name, results)], lang="zh", plots=[[]])
    recorded = tuple(m.error.splitlines()[0] for m in results.modes if m.error)
    assert english_sentences(page, recorded) == []
    assert not any(v in page for v in FORBIDDEN)
