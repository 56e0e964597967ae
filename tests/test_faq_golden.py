"""Golden FAQ pages in en and zh, from results constructed in code (tests/test_faq.py).

Regenerate after an intended change with

    GPUBENCH_UPDATE_GOLDEN=1 python -m pytest tests/test_faq_golden.py

and review the diff under tests/golden/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gpubench.report import faq_page
from gpubench.report.plots import Plot, find_cjk_font
from tests.test_faq import cpu_slot_inputs, two_gpu_inputs
from tests.test_report_golden import check_golden

INPUTS = {"2gpus": two_gpu_inputs, "2slots": cpu_slot_inputs}


def _plots(lang: str) -> dict[str, Plot]:
    stem = f"faq.{lang}"
    plots = {k: Plot(k, k, path=Path(f"{stem}-{k}.png"), lang=lang)
             for k in ("verdicts", "utilisation", "batch")}
    plots["memory"] = Plot("memory", "memory", reason="nothing to draw")
    return plots


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_faq_page_matches_golden(name: str, lang: str) -> None:
    page = faq_page.format_faq(INPUTS[name](), lang, _plots(lang))
    check_golden(f"faq_{name}.{lang}.md", page)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_written_pages_have_their_plots_in_their_language(tmp_path: Path, lang: str) -> None:
    (page,) = faq_page.write_faq(two_gpu_inputs(), tmp_path, [lang])
    text = page.read_text(encoding="utf-8")
    pngs = sorted(tmp_path.glob(f"faq.{lang}-*.png"))
    assert {p.name.split("-")[-1] for p in pngs} <= {
        "batch.png", "memory.png", "utilisation.png", "verdicts.png"}
    assert len(pngs) >= 3 and all(f"({p.name})" in text for p in pngs)
    if lang == "zh" and find_cjk_font() is None:
        pytest.skip("no CJK font: zh plots are labelled in English")
    plots = faq_page.faq_plots.write_faq_plots(two_gpu_inputs(), [], tmp_path, "x", lang)
    assert all(p.lang == lang for p in plots.values() if p.path is not None)
