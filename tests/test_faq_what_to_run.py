"""The section that opens every FAQ page: what to run on this machine, from crafted results."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from gpubench.faq.inputs import FaqInputs, gather
from gpubench.report.faq_page import format_faq, what_to_run
from gpubench.report.faq_text import faq_text
from gpubench.results import OtherProcess, Results
from tests.test_faq import _jitter, mode, results

HEADING = re.compile(r"^## .*$", re.MULTILINE)


def _busy(m: object, pct: float = 60.0) -> object:
    return replace(m, other_load_pct={"cuda:0": pct},  # type: ignore[type-var]
                   other_processes=(OtherProcess(4242, "stress", "cuda:0", pct),))


def crafted_comparison() -> Results:
    """serial 1.0 s; threaded slower; multiprocess 1.25x with serial's result; multi-gpu 2.5x
    with another result; vectorized 3.3x beside other programs' load; streams failed."""
    return results([
        mode("serial", _jitter(1.0)),
        mode("threaded", _jitter(2.5), workers=2),
        mode("multiprocess", _jitter(0.8), workers=2, pids=(201, 202)),
        replace(mode("multi-gpu", _jitter(0.4), ("cuda:0", "cuda:1"), workers=2),
                same_result=False),
        _busy(mode("vectorized", _jitter(0.3))),
        mode("streams", (), status="failed", error="CUDA out of memory\ntraceback"),
    ])


def _section(page: str) -> str:
    """The page's first ``##`` section, heading included."""
    first, *rest = HEADING.finditer(page)
    return page[first.start():rest[0].start()]


def _line(section: str, label: str) -> str:
    return next(line for line in section.splitlines() if line.startswith(f"- **{label}"))


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_page_starts_with_what_to_run(lang: str) -> None:
    page = format_faq(gather([crafted_comparison()]), lang)
    title = faq_text("run.title", lang)
    assert HEADING.search(page).group(0) == f"## {title}"  # type: ignore[union-attr]
    # before the intro, the summary and the answers
    assert page.index(title) < page.index(faq_text("summary", lang)) < page.index("## 1. ")


def test_the_fastest_mode_with_serials_result_on_a_quiet_machine_is_named() -> None:
    section = _section(format_faq(gather([crafted_comparison()]), "en"))
    run = _line(section, "Run:")
    assert "**multiprocess**, 2 worker(s) per device on GPU 0" in run
    # faster, but another result (multi-gpu) or disturbed (vectorized): not the advice
    assert "multi-gpu" not in run and "vectorized" not in run
    assert "1.25x" in _line(section, "Expected speedup:")  # serial 1.0 s over 0.8 s
    assert "(#belief-processes)" in run and "(#performance)" in run


def test_what_did_not_help_and_what_was_not_judged_are_listed_with_their_evidence() -> None:
    advice = what_to_run(crafted_comparison())
    assert advice is not None and advice.best is not None and advice.best.name == "multiprocess"
    assert [m.name for m, _ in advice.not_helped] == ["threaded", "multi-gpu", "streams"]
    assert [m.name for m, _ in advice.not_judged] == ["vectorized"]
    section = _section(format_faq(gather([crafted_comparison()]), "en"))
    items = {line.split(":")[0].strip(" -"): line for line in section.splitlines()
             if line.startswith("  - ")}
    assert "slower than serial, 0.40x" in items["threaded"]
    assert "(#belief-threads)" in items["threaded"]
    assert "another result" in items["multi-gpu"] and "(#belief-multi-gpu)" in items["multi-gpu"]
    assert "failed: CUDA out of memory" in items["streams"] and "traceback" not in section
    assert "other programs' load" in items["vectorized"]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_link_of_the_section_has_its_anchor_on_the_page(lang: str) -> None:
    page = format_faq(gather([crafted_comparison()]), lang)
    targets = set(re.findall(r"\]\(#([\w-]+)\)", _section(page)))
    assert {"performance", "belief-threads", "belief-processes", "belief-multi-gpu",
            "clients"} <= targets
    assert all(f'<a id="{target}"></a>' in page for target in targets)


def test_without_a_faster_correct_mode_serial_is_the_advice() -> None:
    run = results([mode("serial", _jitter(1.0)), mode("threaded", _jitter(2.5), workers=2),
                   replace(mode("multiprocess", _jitter(0.5), workers=2), same_result=False)])
    section = _section(format_faq(gather([run]), "en"))
    assert "**serial**" in _line(section, "Run:") and "clearly faster" in _line(section, "Run:")
    assert "serial is the baseline" in _line(section, "Expected speedup:")


def test_other_load_on_serials_rounds_leaves_the_advice_undecided() -> None:
    run = results([_busy(mode("serial", _jitter(1.0))), mode("multiprocess", _jitter(0.5))])
    section = _section(format_faq(gather([run]), "en"))
    assert "not decided" in _line(section, "Run:") and "pid 4242 stress" in section
    assert "inconclusive" in _line(section, "Expected speedup:")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_with_no_runs_everything_is_not_measured(lang: str) -> None:
    section = _section(format_faq(FaqInputs(), lang))
    items = [line for line in section.splitlines() if line.startswith("- ")]
    nothing = f"**{faq_text('verdict.not-measured', lang)}**"
    # the mode, the speedup and what did not help; client_resources without a sweep
    assert [line.endswith(nothing) for line in items] == [True, True, False, True]
    assert faq_text("verdict.not-measured", lang).lower() in items[2].lower()


def test_the_zh_page_has_the_translated_section() -> None:
    en, zh = (_section(format_faq(gather([crafted_comparison()]), lang)) for lang in ("en", "zh"))
    assert zh.startswith("## 本机推荐的运行方式")
    assert "**多进程（单设备）**，在 GPU 0 上每设备 2 个工作进程" in zh
    assert "相对串行 **1.25x" in zh and "比串行慢，0.40x" in zh
    # every label and phrase is Chinese; the figures are the English page's own
    for english in ("What to run", "Run:", "Expected speedup", "Did not help", "slower than"):
        assert english in en and english not in zh
    assert re.findall(r"\d+\.\d+x", en) == re.findall(r"\d+\.\d+x", zh)


def test_client_resources_come_from_a_measured_knee(tmp_path: Path) -> None:
    from tests.test_clients_per_device import _crafted_faq_summary

    inputs = replace(gather([crafted_comparison()]),
                     clients_sweeps=(_crafted_faq_summary(tmp_path),))
    line = _line(_section(format_faq(inputs, "en")), "`client_resources`")
    assert '"num_gpus": 0.5' in line and "ray's knee, 2 per device, measured" in line
    assert "(#clients)" in line
