"""The report page, the findings coupling, the torch ban, and ``gpubench report`` as a user runs it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpubench.report import page
from gpubench.report.page import findings_for, format_report, write_report
from gpubench.results import read_results

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpubench", "report", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or REPO,
    )


def test_write_report_links_every_image_relatively(tmp_path: Path) -> None:
    runs = [read_results(FIXTURES / "report_failed.json")]
    out = write_report(runs, tmp_path / "docs" / "faq.md", "zh", labels=["faq"])
    assert out == tmp_path / "docs" / "faq.md"
    body = out.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", body)
    assert len(links) >= 2
    for link in links:
        assert not Path(link).is_absolute() and "/" not in link
        assert (out.parent / link).is_file()
        assert link.startswith("faq-")
    assert "## 失败的模式" in body and "killed by signal 9" in body
    assert "## 复现" in body and "gpubench compare --case cnn" in body


def test_several_results_give_one_section_each_and_a_combined_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = page.write_plots
    monkeypatch.setattr(page, "write_plots", lambda *a: real(*a, kinds=("speedup", "gantt")))
    runs = [read_results(FIXTURES / f"{n}.json") for n in ("report_2slots", "report_1gpu")]
    out = write_report(runs, tmp_path / "both.md", labels=["laptop", "gpu-box"])
    body = out.read_text(encoding="utf-8")
    assert "## All runs" in body
    assert "## Run 1: laptop" in body and "## Run 2: gpu-box" in body
    assert body.count("### Performance") == 2
    assert (tmp_path / "both-1-speedup.png").exists() and (tmp_path / "both-2-gantt.png").exists()


def test_page_without_monitoring_says_so() -> None:
    results = read_results(FIXTURES / "report_nomonitor.json")
    body = format_report([("x", results)], lang="en", findings=lambda r, lang: [])
    assert "No monitoring data in this run" in body
    assert "busy" not in body.split("## Performance")[1].split("##")[0].split("\n\n")[0]
    assert "No findings." in body


def test_page_names_the_monitor_backend() -> None:
    results = read_results(FIXTURES / "report_4gpus.json")
    body = format_report([("x", results)], lang="en", findings=lambda r, lang: None)
    assert "backend `nvml`" in body and "any kernel ran" in body
    assert "Findings are not available" in body


def test_the_monitors_note_is_in_the_pages_language() -> None:
    from dataclasses import replace

    from gpubench.report.i18n import monitor_note
    from gpubench.results import NOTE_HOST_INSTEAD, NOTE_NO_GPU

    results = read_results(FIXTURES / "report_4gpus.json")
    results = replace(results, monitor={**(results.monitor or {}), "note": NOTE_NO_GPU})
    zh = format_report([("x", results)], lang="zh", findings=lambda r, lang: None)
    en = format_report([("x", results)], lang="en", findings=lambda r, lang: None)
    assert "本次运行没有 GPU：由主机后端测量 CPU 槽" in zh and NOTE_NO_GPU not in zh
    assert NOTE_NO_GPU in en
    assert monitor_note("NVML failed" + NOTE_HOST_INSTEAD, "zh") == "NVML failed：改用主机后端测量"
    assert monitor_note("something else", "zh") == "something else"
    note = "; ".join([NOTE_NO_GPU, "3 tick(s) skipped: sampling fell behind"])
    assert monitor_note(note, "zh") == "本次运行没有 GPU：由主机后端测量 CPU 槽；跳过了 3 次采样：采样跟不上"


def test_font_fallback_is_said_on_the_page() -> None:
    results = read_results(FIXTURES / "report_1gpu.json")
    english_plot = page.Plot("speedup", "t", path=Path("x-speedup.png"), lang="en")
    chinese_plot = page.Plot("speedup", "t", path=Path("x-speedup.png"), lang="zh")
    fallback = format_report([("x", results)], lang="zh", plots=[[english_plot]])
    native = format_report([("x", results)], lang="zh", plots=[[chinese_plot]])
    assert "本机没有可显示中文的字体" in fallback
    assert "本机没有可显示中文的字体" not in native


def test_the_pages_findings_are_the_runs_findings_in_its_language() -> None:
    from gpubench.findings import compute_findings
    from gpubench.report.findings import finding_text

    results = read_results(FIXTURES / "report_2slots.json")
    found = compute_findings(results)
    views = findings_for(results, "zh")
    assert [v.code for v in views] == [f.code for f in found] and views
    assert [(v.message, v.hint) for v in views] == [finding_text(f, "zh") for f in found]
    body = format_report([("x", results)], lang="zh")
    assert f"- **警告**: {views[0].message}" in body
    assert f"*建议:* {views[0].hint}" in body


def test_an_error_finding_is_labelled_on_the_page() -> None:
    results = read_results(FIXTURES / "report_2slots.json")
    view = page.FindingView("error", "ray computed something else", "", "result-differs")
    body = format_report([("x", results)], lang="en", findings=lambda r, lang: [view])
    assert "- **error**: ray computed something else" in body


def test_no_findings_computed_says_they_are_not_available() -> None:
    results = read_results(FIXTURES / "report_2slots.json")
    body = format_report([("x", results)], lang="en", findings=lambda r, lang: None)
    assert "Findings are not available" in body


def test_the_device_column_says_what_its_percentage_is() -> None:
    from gpubench.report.tables import busy_cell, same_result_cell
    from gpubench.results import DeviceStats, ModeResult, Results

    gpu = ModeResult("serial", "ok", devices=("cuda:0",), device_stats=(
        DeviceStats("cuda:0", False, 9.0, 20.0, None),))
    cpu = ModeResult("serial", "ok", devices=("cpu:0",), device_stats=(
        DeviceStats("cpu:0", True, 93.0, 99.0, None),))
    unknown = ModeResult("serial", "ok", devices=("cuda:0",), device_stats=(
        DeviceStats("cuda:0", True, None, None, None),))
    assert busy_cell(gpu, "cuda:0", "en", monitored=True) == "idle (9% kernel-active)"
    assert busy_cell(gpu, "cuda:0", "zh", monitored=True) == "闲置（kernel 活跃 9%）"
    assert busy_cell(cpu, "cpu:0", "en", monitored=True) == "busy (93% of the slot's cores)"
    assert busy_cell(cpu, "cpu:0", "zh", monitored=True) == "工作（槽内核心占用 93%）"
    assert busy_cell(unknown, "cuda:0", "en", monitored=True) == "busy"

    @dataclass(frozen=True)
    class Unrepeatable(ModeResult):
        reproducible: bool = True

    results = Results({}, {}, (gpu,))
    odd = Unrepeatable("threaded", "ok", reproducible=False, same_result=None)
    assert same_result_cell(results, odd, "en") == "≈ not reproducible"
    assert same_result_cell(results, odd, "zh") == "≈ 不可复现"


def test_the_catalogue_has_both_languages_and_the_monitors_own_notes() -> None:
    from gpubench import results
    from gpubench.report.i18n import CatalogueError, catalogue, load_catalogue

    phrases = catalogue()
    assert phrases["note.no-gpu"][0] == results.NOTE_NO_GPU
    assert phrases["note.host-chosen"][0] == results.NOTE_HOST_CHOSEN
    assert phrases["note.host-instead"][0] == "{reason}" + results.NOTE_HOST_INSTEAD
    assert phrases["note.ticks-skipped"][0] == results.NOTE_TICKS_SKIPPED
    assert phrases["note.samples-failed"][0] == results.NOTE_SAMPLES_FAILED
    assert all(en.strip() and zh.strip() for en, zh in phrases.values())
    with pytest.raises(CatalogueError, match="a.b"):
        load_catalogue('[a.b]\nen = "only English"\n')
    with pytest.raises(CatalogueError, match="stray"):
        load_catalogue('stray = 1\n')


def _ruff_on(filename: str, source: str) -> subprocess.CompletedProcess[str]:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    return subprocess.run(
        [ruff, "check", "--no-cache", "--stdin-filename", filename, "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def test_ruff_bans_torch_in_report() -> None:
    source = "import torch\n\nprint(torch)\n"
    inside = _ruff_on("gpubench/report/probe.py", source)
    assert inside.returncode == 1 and "TID251" in inside.stdout, inside.stdout + inside.stderr
    assert "TID251" not in _ruff_on("gpubench/probe.py", source).stdout


# --- the command line ----------------------------------------------------------------------


def _bad_files(tmp: Path) -> dict[str, Path]:
    files = {
        "corrupt": ("{ not json", "not valid JSON"),
        "future": (json.dumps({"schema_version": 999, "modes": []}), "newer than this gpubench"),
        "not-results": (json.dumps([1, 2, 3]), "not a gpubench results object"),
        "bad-status": (
            json.dumps({"schema_version": 1, "modes": [{"name": "serial", "status": "weird"}]}),
            "unknown status",
        ),
    }
    out = {}
    for name, (content, _) in files.items():
        path = tmp / f"{name}.json"
        path.write_text(content, encoding="utf-8")
        out[name] = path
    out["missing"] = tmp / "does-not-exist.json"
    return out


@pytest.mark.parametrize("case", ["corrupt", "future", "missing"])
def test_bad_results_file_is_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    path = _bad_files(tmp_path)[case]
    done = run_cli(str(path), "-o", str(tmp_path / "r.md"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("gpubench report: error:") and path.name in lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "r.md").exists()


@pytest.mark.parametrize("case", ["not-results", "bad-status", "corrupt"])
def test_bad_file_after_a_good_one_fails_without_writing(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from gpubench.cli import main

    bad = _bad_files(tmp_path)[case]
    code = main(
        ["report", str(FIXTURES / "report_2slots.json"), str(bad), "-o", str(tmp_path / "r.md")]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and bad.name in err
    assert not (tmp_path / "r.md").exists()


def test_cli_writes_beside_the_first_results_file_by_default(tmp_path: Path) -> None:
    src = tmp_path / "run.json"
    shutil.copy(FIXTURES / "report_failed.json", src)
    done = run_cli(str(src), "--lang", "zh")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "run.md")
    body = (tmp_path / "run.md").read_text(encoding="utf-8")
    assert body.startswith("# gpubench 报告：run")
    assert (tmp_path / "run-speedup.png").exists()
    assert "| 多进程（单设备） " in body


def test_cli_refuses_an_output_that_is_not_markdown(tmp_path: Path) -> None:
    done = run_cli(str(FIXTURES / "report_2slots.json"), "-o", str(tmp_path / "r.html"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
