"""The sweep's summary: typed, versioned, one reader; old files load, newer ones are refused,
and the FAQ and the sweep's own page table the same rows and name the same knee."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import gpubench
from gpubench.faq.inputs import FaqInputs
from gpubench.report.faq_clients import format_clients_section
from gpubench.report.i18n import mode_label
from gpubench.report.sweep_page import format_per_device_table, format_sweep_table
from gpubench.results import ResultsFileError
from gpubench.sweep_summary import (
    SWEEP_SUMMARY_VERSION,
    ModeRow,
    SerialEffect,
    SummaryPoint,
    SweepSummary,
    load_sweep_summary,
)
from tests.test_clients_per_device import TABLE, crafted_summary

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "reports" / "gpu-h200" / "sweep" / "summary.json"


def batch_summary() -> SweepSummary:
    serial = [ModeRow("serial", "ok", round_s=r, samples_per_round=1024, per_sample_us=r / 1024e-6,
                      speedup_vs_serial=1.0, util_mean_pct=u) for r, u in ((3.0, 35.0), (1.2, 88.0))]
    threaded = ModeRow("threaded", "failed", error="worker died\nsecond line", same_result=None)
    accuracy = {"batch_size": 32, "rounds": 2, "initial_accuracy": 0.1, "accuracy": [0.4, 0.7],
                "final": 0.7, "target": 0.6, "rounds_to_target": 2, "time_to_target_s": 6.0}
    return SweepSummary(
        parameter="batch_size", flag="--batch-size", values=(32, 64, 128),
        points=(SummaryPoint(32, "batch_size-32.json", False, (serial[0], threaded), accuracy),
                SummaryPoint(64, refused="the run needs about 40 GiB of host memory"),
                SummaryPoint(128, "batch_size-128.json", False, (serial[1],),
                             {"error": "RuntimeError: broke"})),
        serial_effect=SerialEffect(32, 128, (3.0, 1.2), (serial[0].per_sample_us or 0.0,
                                                         serial[1].per_sample_us or 0.0),
                                   2.5, 2.5),
        refused={"64": "the run needs about 40 GiB of host memory"}, command="gpubench sweep",
        created_utc="2024-01-01T00:00:00Z")


def test_a_summary_survives_json_and_the_reader(tmp_path):
    for summary in (batch_summary(), crafted_summary(tmp_path / "a", refused=4)):
        assert load_sweep_summary(json.loads(summary.to_json())) == summary
        (tmp_path / "summary.json").write_text(summary.to_json())
        assert load_sweep_summary(tmp_path) == summary  # the folder names its summary.json
    data = json.loads(crafted_summary(tmp_path / "b").to_json())
    assert data["schema_version"] == SWEEP_SUMMARY_VERSION
    assert set(data["per_device"]["knees"]["ray"]["client_resources"]) == {"num_gpus", "num_cpus"}
    assert gpubench.SweepSummary is SweepSummary
    assert gpubench.load_sweep_summary is load_sweep_summary


def test_the_committed_version_1_summary_still_loads():
    raw = json.loads(COMMITTED.read_text())
    assert "schema_version" not in raw  # version 1's oldest spelling
    summary = load_sweep_summary(COMMITTED)
    assert summary.schema_version == SWEEP_SUMMARY_VERSION
    assert (summary.parameter, summary.flag) == (raw["parameter"], raw["flag"])
    assert list(summary.values) == raw["values"] and summary.per_device is None
    effect = summary.serial_effect
    assert effect is not None and effect.round_speedup == raw["serial_effect"]["round_speedup"]
    first = raw["points"][0]["modes"][0]
    row = summary.points[0].modes[0]
    assert (row.name, row.round_s, row.same_result) == (first["name"], first["round_s"],
                                                        first["same_result"])
    assert row.workers is None and row.speedup_vs_one is None  # not in version 1's rows
    assert "serial, --batch-size" in format_sweep_table(summary)


def _as_version_1(summary: SweepSummary) -> dict[str, Any]:
    """The summary as version 1 wrote it: ``speedup_vs_one`` only where it was set."""
    data = json.loads(summary.to_json())
    data["schema_version"] = 1
    for p in data["points"]:
        for m in p["modes"]:
            if m["speedup_vs_one"] is None:
                del m["speedup_vs_one"]
    return data


def test_a_version_1_workers_per_device_summary_loads_as_written(tmp_path):
    summary = crafted_summary(tmp_path, refused=4)
    old = _as_version_1(summary)
    assert any("speedup_vs_one" not in m for p in old["points"] for m in p["modes"])
    assert load_sweep_summary(old) == summary


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: {**d, "schema_version": 99}, "schema_version 99 is newer than this gpubench"),
        (lambda d: {**d, "schema_version": True}, "unknown sweep summary schema_version True"),
        (lambda d: {**d, "points": [{"modes": []}]}, "malformed sweep summary: missing 'value'"),
        (lambda d: {**d, "points": [{"value": 1, "modes": [{"name": "x", "status": "great"}]}]},
         "mode 'x' has unknown status 'great'"),
        (lambda d: {**d, "per_device": {"knees": {"ray": {"value": 2}}}},
         "malformed sweep summary: missing 'client_resources'"),
        (lambda d: {"modes": []}, "not a gpubench sweep summary"),
    ],
)
def test_a_newer_or_malformed_summary_is_refused_in_one_line(tmp_path, change, words):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(change(batch_summary().to_dict())))
    with pytest.raises(ResultsFileError) as caught:
        load_sweep_summary(path)
    message = str(caught.value)
    assert words in message and str(path) in message and "\n" not in message


def test_an_unreadable_summary_is_one_line(tmp_path):
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(ResultsFileError, match=r"summary.json is not valid JSON \(line 1"):
        load_sweep_summary(tmp_path)
    with pytest.raises(ResultsFileError, match="cannot read"):
        load_sweep_summary(tmp_path / "missing")


# --- the FAQ and the sweep's page read the same summary -------------------------------------------


def _faq_rows(section: str) -> list[tuple[str, ...]]:
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 5 and cells[0].isdigit():
            rows.append((cells[0], cells[1], cells[2], cells[3], cells[4]))
    return rows


def _page_rows(page: str) -> list[tuple[str, ...]]:
    rows = []
    for line in page.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) > 5 and cells[0].isdigit():  # value, mode, status, workers, round, ...
            value, mode = cells[0], mode_label(cells[1], "en")
            rows.append((value, mode, cells[3], cells[5], cells[6]) if cells[2] != "refused"
                        else (value, "—", "—", "—", "—"))
    return rows


def _faq_knees(section: str) -> dict[str, tuple[str, str]]:
    found = re.findall(r"\*\*(\S+): the knee is (\S+) per device\*\*.*?`(client_resources=\{.*?\})`",
                       section)
    return {name: (k, res) for name, k, res in found}


def _page_knees(page: str) -> dict[str, tuple[str, str]]:
    found = re.findall(r"knee, (\S+): (\S+) worker\(s\) per device.*\n\s+(client_resources=.*)",
                       page)
    return {name: (k, res) for name, k, res in found}


def test_the_faq_and_the_sweep_page_table_the_same_rows_and_name_the_same_knee(tmp_path):
    summary = crafted_summary(tmp_path, refused=8, cuda=True, table={**TABLE, 8: TABLE[4]})
    assert summary.per_device is not None
    knees = summary.per_device.knees
    # The knee is not the best value here: a reader that took the best, or derived the knee
    # again with another threshold, would name another value.
    assert knees["multi-gpu"] is not None
    assert (knees["multi-gpu"].value, knees["multi-gpu"].best_value) == (2, 4)
    faq = "\n\n".join(format_clients_section(FaqInputs(clients_sweeps=(summary,)), "en"))
    page = format_per_device_table(summary)
    assert _faq_rows(faq) == _page_rows(page)
    assert len(_faq_rows(faq)) == len(summary.table_rows()) == 13  # 3 points x 4 modes, 1 refused
    expected = {name: (str(k.value), f'client_resources={{"num_gpus": {k.client_resources.num_gpus:g}, '
                                     f'"num_cpus": {k.client_resources.num_cpus:g}}}')
                for name, k in knees.items() if k is not None}
    assert _faq_knees(faq) == _page_knees(page) == expected


def test_a_committed_workers_per_device_summary_loads_with_its_knees():
    path = ROOT / "docs" / "faq" / "cpu-slots" / "results" / "clients" / "resnet18" / "summary.json"
    raw = json.loads(path.read_text())
    summary = load_sweep_summary(path)
    assert summary.per_device is not None and summary.per_device.cpu_slots

    def cpus(res):
        return None if res is None else (res["num_cpus"] if isinstance(res, dict) else res.num_cpus)

    knees = {n: None if k is None else (k["value"], cpus(k["client_resources"]))
             for n, k in raw["per_device"]["knees"].items()}
    assert knees and {n: None if k is None else (k.value, cpus(k.client_resources))
                      for n, k in summary.per_device.knees.items()} == knees


def test_faq_from_takes_a_summary_as_the_sweep_writes_it(tmp_path):
    from gpubench.faq.inputs import load_inputs
    from gpubench.results import write_results
    from tests.test_faq import two_gpu_inputs

    runs = two_gpu_inputs().runs
    paths = [write_results(r, tmp_path / f"run{i}.json") for i, r in enumerate(runs)]
    summary = tmp_path / "summary.json"
    summary.write_text(batch_summary().to_json())  # with its schema_version
    inputs = load_inputs([*paths, summary])
    assert len(inputs.runs) == len(runs)  # the summary is not taken for a results file
    assert inputs.accuracy[32][0]["final"] == 0.7
    assert inputs.accuracy[128] == ({"error": "RuntimeError: broke"},)
