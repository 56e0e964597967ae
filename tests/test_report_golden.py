"""Golden files for the report's tables and pages, in en and zh.

Regenerate after an intended change with

    GPUBENCH_UPDATE_GOLDEN=1 python -m pytest tests/test_report_golden.py

and review the diff under tests/golden/. The fixtures come from
tests/fixtures/build_report_fixtures.py.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from gpubench.report.page import FindingView, format_report
from gpubench.report.plots import Plot
from gpubench.report.tables import format_performance_table, format_summary_table
from gpubench.results import read_results, to_json

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
GOLDEN = HERE / "golden"
NAMES = ("report_1gpu", "report_2slots", "report_4gpus", "report_nomonitor", "report_failed")
UPDATE = os.environ.get("GPUBENCH_UPDATE_GOLDEN") == "1"


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    assert path.exists(), f"{path} missing: run with GPUBENCH_UPDATE_GOLDEN=1 to create it"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{name} differs from its golden file (GPUBENCH_UPDATE_GOLDEN=1)"


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("name", NAMES)
def test_tables_match_golden(name: str, lang: str) -> None:
    results = read_results(FIXTURES / f"{name}.json")
    terminal = format_summary_table(results, tablefmt="simple", lang=lang)
    performance_terminal = format_performance_table(results, lang, "simple")
    check_golden(f"{name}.{lang}.terminal.txt", f"{terminal}\n\n{performance_terminal}\n")
    markdown = format_summary_table(results, tablefmt="github", lang=lang)
    performance = format_performance_table(results, lang, "github")
    check_golden(f"{name}.{lang}.tables.md", f"{markdown}\n\n{performance}\n")


def _fixed_plots(stem: str, lang: str) -> list[Plot]:
    return [
        Plot("speedup", "Speedup per mode", path=Path(f"{stem}-speedup.png"), lang=lang),
        Plot("utilisation", "Utilisation over time", reason="no monitoring data in this run"),
        Plot("gantt", "Client training", path=Path(f"{stem}-gantt.png"), lang="en"),
    ]


def _stub_findings(results, lang):  # type: ignore[no-untyped-def]
    if results.mode("threaded") is None:
        return []
    message = "threaded ran at 0.43x of serial" if lang == "en" else "多线程速度为串行的 0.43 倍"
    return [FindingView("error", message, "use one process per device", "threads-slower")]


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("name", ["report_failed", "report_nomonitor", "report_4gpus"])
def test_page_matches_golden(name: str, lang: str) -> None:
    results = read_results(FIXTURES / f"{name}.json")
    page = format_report(
        [(name, results)], lang=lang, plots=[_fixed_plots(name, lang)], findings=_stub_findings
    )
    check_golden(f"{name}.{lang}.page.md", page)


def test_combined_page_matches_golden() -> None:
    runs = [(n, read_results(FIXTURES / f"{n}.json")) for n in ("report_2slots", "report_1gpu")]
    page = format_report(
        runs, lang="en", plots=[_fixed_plots("a", "en"), []], findings=lambda r, lang: None
    )
    check_golden("combined.en.page.md", page)


def test_fixtures_are_what_the_builder_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location(
        "build_report_fixtures", FIXTURES / "build_report_fixtures.py"
    )
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, builder)  # dataclasses look their module up
    spec.loader.exec_module(builder)
    assert set(builder.FIXTURES) == set(NAMES)
    for name, make in builder.FIXTURES.items():
        on_disk = (FIXTURES / f"{name}.json").read_text(encoding="utf-8")
        assert to_json(make()) == on_disk, f"{name}.json is stale: rerun the builder"
