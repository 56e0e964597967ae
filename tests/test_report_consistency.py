"""Pages a reader can trust: one speedup per mode everywhere, a failed result check never drawn
as a success, provenance from the files, links that resolve, results files at the schema."""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from gpubench.findings import compute_findings
from gpubench.report import measures
from gpubench.report.i18n import mode_label, text
from gpubench.report.page import format_report
from gpubench.report.plots import (
    HATCH,
    draw_sweep_speedup,
    plot_language,
    plot_rc,
    speedup_bars,
    speedup_figure,
)
from gpubench.results import SCHEMA_VERSION, Results, read_results
from gpubench.sweep_summary import SWEEP_SUMMARY_VERSION, load_sweep_summary

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Each committed single-run page and the results file it is written from
# (scripts/make-reports.sh writes them so).
PAGES = {
    "reports/cpu-slots/compare": "reports/cpu-slots/compare.json",
    "reports/cpu-slots/vectorized-mlp": "reports/cpu-slots/vectorized-mlp.json",
    "reports/gpu-h200/compare": "reports/gpu-h200/compare.json",
    "reports/gpu-h200/one-gpu": "reports/gpu-h200/compare-one-gpu.json",
    "reports/gpu-h200/all-modes": "reports/gpu-h200/compare-all.json",
}
# Each FAQ folder and the comparison its performance table is built from.
FAQS = {
    "docs/faq/cpu-slots": "docs/faq/cpu-slots/results/compare.json",
    "docs/faq/gpu-h200": "reports/gpu-h200/compare-all.json",
}


def _cpu(results: Results) -> bool:
    return measures.cpu_slots_only(measures.device_ids(results))


def table_rows(page: str, header_key: str, lang: str) -> list[list[str]]:
    """The cells of every row of the first markdown table whose header starts with the
    phrase ``header_key``."""
    lines = page.splitlines()
    first = text(header_key, lang)
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells and cells[0] == first:
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            return [cells, *rows]
    raise AssertionError(f"no table headed {first!r}")


def speed_cells(page: str, results: Results, lang: str) -> dict[str, tuple[str, str, str]]:
    """Mode -> (speed, speed verdict, result) cells of the page's performance table."""
    header, *rows = table_rows(page, "col.config", lang)
    at = header.index(text("col.speed", lang))
    by_label = {r[0]: r for r in rows}
    out = {}
    for mode in results.modes:
        label = mode_label(mode.name, lang, cpu_slots=_cpu(results), devices=len(mode.devices))
        row = by_label[label]
        out[mode.name] = (row[at], row[at + 1], row[at + 2])
    return out


def readme_cells() -> dict[str, dict[str, str]]:
    """Results file -> mode -> the README table's cell."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import readme_table
    finally:
        sys.path.pop(0)
    text_ = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text_.split(readme_table.START, 1)[1].split(readme_table.END, 1)[0].strip().splitlines()
    out = {}
    for label, path in readme_table.ROWS:
        row = next((line for line in lines if line.startswith(f"| {label} |")), None)
        if row is not None:
            cells = [c.strip() for c in row.strip().strip("|").split("|")][1:]
            out[path] = dict(zip(readme_table.COLUMNS, cells, strict=True))
    return out


# --- one speedup per mode, everywhere -------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("stem", sorted(PAGES))
def test_a_committed_page_shows_one_speedup_per_mode(stem: str, lang: str) -> None:
    results = read_results(ROOT / PAGES[stem])
    page = (ROOT / f"{stem}.{lang}.md").read_text(encoding="utf-8")
    cells = speed_cells(page, results, lang)
    bars = {b.mode: b for b in speedup_bars(results, lang)}
    readme = readme_cells().get(PAGES[stem], {})
    for mode in results.modes:
        speed = measures.speed_of(results, mode)
        if not mode.ok:
            continue
        # the table: the estimate and the interval of gpubench.stats, as measures formats it
        assert cells[mode.name][0] == measures.format_speedup(speed), (stem, mode.name)
        figure = f"{speed.estimate:.2f}x"
        # the plot: the same value, or none where the result check failed
        bar = bars[mode.name]
        assert bar.value == (speed.estimate if speed.drawable else None)
        # the README: the same figure
        if mode.name in readme and mode.name != "serial":
            assert readme[mode.name].startswith(figure), (stem, mode.name, readme[mode.name])
    # the findings: every speedup they state is the table's for that mode
    for f in compute_findings(results):
        for facts in _speedup_facts(f.facts):
            mode = results.mode(facts["mode"])
            assert mode is not None
            assert f"{facts['speedup']:.2f}x" == f"{measures.speed_of(results, mode).estimate:.2f}x"
            assert f"{facts['speedup']:.2f}x" in page


def _speedup_facts(facts: dict[str, Any], mode: str | None = None) -> list[dict[str, Any]]:
    """``{"mode", "speedup"}`` for every speedup a finding's facts hold (clauses included)."""
    mode = facts.get("mode", mode)
    out = []
    if isinstance(mode, str) and isinstance(facts.get("speedup"), float):
        out.append({"mode": mode, "speedup": facts["speedup"]})
    for value in facts.values():
        if isinstance(value, dict):
            out += _speedup_facts(value, mode)
        elif isinstance(value, list):
            out += [x for v in value if isinstance(v, dict) for x in _speedup_facts(v, mode)]
    return out


OWN = "reports/cpu-own-client"
OWN_RUNS = ("idealised-cpu2", "flower-like-cpu2", "example-app-cpu2", "idealised-cpu1",
            "flower-like-cpu1", "example-app-cpu1")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_combined_own_client_page_and_the_readme_agree(lang: str) -> None:
    page = (ROOT / OWN / f"own-client.{lang}.md").read_text(encoding="utf-8")
    header, *rows = table_rows(page, "col.run", lang)
    at = header.index(text("col.speed", lang))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    own = readme.split("<!-- measured:own-client -->", 1)[1].split("<!-- /measured:own-client", 1)[0]
    for label in OWN_RUNS:
        results = read_results(ROOT / OWN / f"{label}.json")
        cells = {r[1]: r[at] for r in rows if r[0] == label}
        for mode in results.modes:
            if not mode.ok:
                continue
            name = mode_label(mode.name, lang, cpu_slots=True, devices=len(mode.devices))
            speed = measures.speed_of(results, mode)
            assert cells[name] == measures.format_speedup(speed), (label, mode.name)
            if mode.name in ("threaded", "multiprocess", "multi-gpu") and label != "flower-like-cpu1":
                assert f"{speed.estimate:.2f}x" in own, (label, mode.name)


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("folder", sorted(FAQS))
def test_a_committed_faq_page_shows_the_reports_speedups(folder: str, lang: str) -> None:
    results = read_results(ROOT / FAQS[folder])
    page = (ROOT / folder / f"faq.{lang}.md").read_text(encoding="utf-8")
    cells = speed_cells(page, results, lang)
    for mode in results.modes:
        if mode.ok:
            assert cells[mode.name][0] == measures.format_speedup(measures.speed_of(results, mode))
    # the answers at a glance: beliefs 1 and 2 are the threaded and multiprocess cells
    header, *rows = _summary(page)
    for index, name in ((0, "threaded"), (1, "multiprocess")):
        mode = results.mode(name)
        assert mode is not None
        assert rows[index][-1] == cells[name][0], (name, rows[index])


def _summary(page: str) -> list[list[str]]:
    lines = page.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| #"))
    rows = []
    for line in [lines[start], *lines[start + 2:]]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


# --- a failed result check is never a success ---------------------------------------------


def _one_failed() -> Results:
    results = read_results(FIXTURES / "report_2slots.json")
    modes = tuple(replace(m, same_result=False, max_abs_diff_vs_serial=0.3)
                  if m.name == "threaded" else m for m in results.modes)
    return results.with_modes(modes)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_failed_mode_is_marked_in_the_table(lang: str) -> None:
    results = _one_failed()
    page = format_report([("crafted", results)], lang=lang)
    cells = speed_cells(page, results, lang)
    speed, verdict, check = cells["threaded"]
    assert check == "✗" and verdict == text("verdict.speed.not-comparable", lang)
    # the other modes keep their marks; the legend says what ✗ means on this page
    assert cells["multi-gpu"][2] == "✓" and cells["multi-gpu"][1] == text(
        "verdict.speed.faster", lang)
    assert text("page.speed_legend", lang) in page


def _patches(fig: Figure) -> list[Rectangle]:
    return [p for ax in fig.axes for p in ax.patches if isinstance(p, Rectangle)]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_failed_mode_is_drawn_hatched_without_a_value(lang: str) -> None:
    results = _one_failed()
    with matplotlib.rc_context(plot_rc(lang)):
        made = speedup_figure(results, plot_language(lang)[0])
    assert not isinstance(made, str)
    fig, bars = made
    threaded = next(b for b in bars if b.mode == "threaded")
    assert threaded.hatched and threaded.value is None
    estimate = measures.speed_of(results, results.mode("threaded"))  # type: ignore[arg-type]
    assert estimate.estimate is not None  # the ratio exists; the plot refuses to show it
    gids = {p.get_gid(): p for p in _patches(fig) if p.get_gid()}
    shapes = {c.get_gid(): c for ax in fig.axes for c in ax.collections
              if isinstance(c, PathCollection)}
    hatched = shapes["speedup:threaded:differs"]
    assert hatched.get_hatch() == HATCH
    assert hatched.get_facecolor()[0][:3] == pytest.approx((0.96, 0.96, 0.96), abs=0.01)
    # a hatched square at the baseline, never a bar as tall as the axis
    ((_, y),) = hatched.get_offsets()
    assert y == 0
    assert "speedup:threaded" not in gids  # no coloured bar for it
    assert tuple(gids["speedup:multi-gpu"].get_facecolor()[:3]) != tuple(
        hatched.get_facecolor()[0][:3])
    labels = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert f"{estimate.estimate:.2f}x" not in labels
    multi = measures.speed_of(results, results.mode("multi-gpu"))  # type: ignore[arg-type]
    assert f"{multi.estimate:.2f}x" in labels


def test_a_sweep_point_whose_result_differs_is_hatched_without_a_value() -> None:
    summary = load_sweep_summary(ROOT / "reports/gpu-h200/sweep")
    fig = Figure()
    ax = fig.add_subplot()
    draw_sweep_speedup(ax, summary)
    values = [str(p.value) for p in summary.points]
    differs = {(m.name, str(p.value)) for p in summary.points for m in p.modes
               if m.same_result is False}
    assert ("threaded", "32") in differs  # the committed sweep has one
    lines = {line.get_label(): line for line in ax.get_lines()}
    for name, value in differs:
        y = lines[name].get_ydata()[values.index(value)]  # type: ignore[index]
        assert math.isnan(float(y))
    marks = {c.get_gid() for c in ax.collections if isinstance(c, PathCollection)}
    assert {f"sweep:{n}:{v}:hatched" for n, v in differs} <= marks
    ok = lines["multiprocess"].get_ydata()  # type: ignore[union-attr]
    assert not any(math.isnan(float(y)) for y in ok)  # type: ignore[union-attr]


# --- where the numbers come from ----------------------------------------------------------


def test_the_gpu_pages_name_their_gpu_and_each_files_device() -> None:
    for lang in ("en", "zh"):
        page = (ROOT / "docs/faq/gpu-h200" / f"faq.{lang}.md").read_text(encoding="utf-8")
        assert "NVIDIA H200" in page.splitlines()[0]
        # the comparison and the sweep ran on two GPUs: the page says so, per file
        uuids = set(re.findall(r"GPU-[0-9a-f]{8}-[0-9a-f-]{27}", page))
        assert len(uuids) == 2
        assert text("prov.different_devices", lang) in page
    cpu = (ROOT / "docs/faq/cpu-slots/faq.en.md").read_text(encoding="utf-8")
    assert text("prov.different_devices", "en") not in cpu


def test_every_committed_page_states_its_device_rounds_and_interleaving() -> None:
    for stem, path in PAGES.items():
        results = read_results(ROOT / path)
        page = (ROOT / f"{stem}.en.md").read_text(encoding="utf-8")
        header, *rows = table_rows(page, "prov.col.run", "en")
        (row,) = rows
        cell = dict(zip(header, row, strict=True))
        assert cell["measured rounds"] == str(results.config["rounds"])
        assert cell["modes interleaved"] == ("yes" if results.config.get("interleave") else "no")
        gpus = results.environment.get("gpus") or []
        if gpus:
            assert gpus[0]["name"] in cell["device"] and gpus[0]["uuid"] in cell["device"]
        else:
            assert "CPU slots" in cell["device"]


# --- links and schema ---------------------------------------------------------------------

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _markdown_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder in ("docs", "reports"):
        files += sorted((ROOT / folder).rglob("*.md"))
    return files


def test_every_relative_link_in_the_docs_and_reports_resolves() -> None:
    broken = []
    for md in _markdown_files():
        for target in _LINK.findall(md.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (md.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{md.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_the_faq_sets_are_linked_from_the_faq_index_and_the_readme() -> None:
    index = (ROOT / "docs/faq/README.md").read_text(encoding="utf-8")
    linked = set(_LINK.findall(index))
    for folder in ("cpu-slots", "gpu-h200"):
        assert {f"{folder}/faq.en.md", f"{folder}/faq.zh.md"} <= linked
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/faq/README.md" in set(_LINK.findall(readme))


def test_no_committed_results_file_is_behind_the_schema() -> None:
    behind = []
    for folder in ("docs", "reports"):
        for path in sorted((ROOT / folder).rglob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "schema_version" in data:
                # a sweep's summary has its own version
                latest = SWEEP_SUMMARY_VERSION if path.name == "summary.json" else SCHEMA_VERSION
                if data["schema_version"] != latest:
                    behind.append(str(path.relative_to(ROOT)))
    assert not behind, behind
