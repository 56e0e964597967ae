"""gpubench as a library: ``RunConfig``, ``compare``, ``Results.save``, ``load_results``,
``gate``, ``report``, ``sweep``, and the typed answers on ``Results``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

import gpubench
from gpubench.config import ConfigError
from gpubench.errors import UsageError
from gpubench.results import STATUS_FAILED, ModeResult, RunRecord, read_results
from tests.conftest import ROOT, run_config

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# What a user writes (spawned workers import the main module: hence the guard).
SCRIPT = """\
import gpubench
if __name__ == "__main__":
    config = gpubench.RunConfig(case="mlp", clients=4, devices="cpu:2", modes=("serial", "multi-gpu"), rounds=2)
    results = gpubench.compare(config)
    path = results.save({out!r})
    print("read back equal:", gpubench.load_results(path) == results)
"""


@pytest.mark.slow
def test_a_six_line_script_measures_serial_and_multi_gpu_and_reads_its_file_back(tmp_path):
    out = tmp_path / "runs" / "mlp.json"
    script = tmp_path / "bench.py"
    script.write_text(SCRIPT.format(out=str(out)))
    assert len(script.read_text().splitlines()) == 6
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=240, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "read back equal: True" in proc.stdout
    data = json.loads(out.read_text())
    assert [(m["name"], m["status"]) for m in data["modes"]] == [("serial", "ok"),
                                                                ("multi-gpu", "ok")]
    assert data["modes"][1]["same_result"] is True
    assert len(data["modes"][1]["devices"]) == 2 and len(data["modes"][0]["round_times_s"]) == 2
    assert data["monitor"] is not None  # monitoring is on by default, as in the command
    assert not list(out.parent.glob("*.tmp*"))  # written atomically: nothing left beside it


def test_import_gpubench_loads_no_torch_and_no_measuring_side():
    code = textwrap.dedent("""
        import sys
        import gpubench
        names = [n for n in gpubench.__all__ if n != "__version__"]
        for name in names:
            assert getattr(gpubench, name).__doc__, name
        loaded = [m for m in ("torch", "gpubench.run.harness", "gpubench.modes",
                              "gpubench.monitor", "gpubench.train") if m in sys.modules]
        print(len(names), loaded)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["20", "[]"]


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'comparee'"):
        gpubench.comparee  # noqa: B018


def test_compare_refuses_bad_input_before_anything_runs():
    with pytest.raises(ConfigError, match="--clients must be >= 1"):
        gpubench.compare(run_config(clients=0))
    with pytest.raises(ConfigError, match="unknown mode 'warp'"):
        gpubench.compare(run_config(modes=("serial", "warp")))


def _mode(name: str, **kw) -> ModeResult:
    return ModeResult(name=name, status=kw.pop("status", "ok"), **kw)


def test_run_failed_is_a_failed_mode_or_another_result_than_serials():
    results = read_results(FIXTURES / "report_2slots.json")
    ok = results.with_modes((_mode("serial", same_result=True), _mode("multi-gpu",
                                                                      same_result=True)))
    assert not gpubench.run_failed(ok)
    assert not gpubench.run_failed(ok.with_modes((*ok.modes, _mode("streams",
                                                                   status="not_applicable"))))
    assert gpubench.run_failed(ok.with_modes((*ok.modes, _mode("x", status=STATUS_FAILED))))
    assert gpubench.run_failed(ok.with_modes((ok.modes[0], _mode("multi-gpu",
                                                                 same_result=False))))


def test_report_and_gate_read_results_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    path = FIXTURES / "report_2slots.json"
    results = gpubench.load_results(path)
    page = gpubench.write_report(results, tmp_path / "page.md")
    assert page == tmp_path / "page.md" and "multi-gpu" in page.read_text()
    junit = tmp_path / "gate.xml"
    verdicts = gpubench.check_gate(path, path, junit_path=junit)  # a run against itself passes
    assert verdicts.exit_code == 0 and junit.read_text().startswith("<?xml")
    slower = results.with_modes(tuple(
        replace(m, round_times_s=tuple(t * 3 for t in m.round_times_s),
                rounds=tuple(replace(r, time_s=r.time_s * 3) for r in m.rounds))
        if m.name == "multi-gpu" else m for m in results.modes))
    assert gpubench.check_gate(slower, path).exit_code == 1  # multi-gpu three times slower
    with pytest.raises(UsageError, match="cannot write"):
        gpubench.write_report(results, tmp_path / "page.md" / "under-a-file.md")


def test_sweep_writes_one_results_file_per_value(tmp_path):
    config = run_config(modes=("serial",), clients=2, samples=16, batch_size=8)
    sweep = gpubench.sweep(config, "batch_size", [8, 16], tmp_path / "sweep")
    assert [p.value for p in sweep.points] == [8, 16]
    for point, batch in zip(sweep.points, (8, 16), strict=True):
        assert point.path.parent == tmp_path / "sweep"
        assert gpubench.load_results(point.path).config.batch_size == batch
    with pytest.raises(UsageError, match="cannot sweep 'seed'"):
        gpubench.sweep(config, "seed", [1, 2], tmp_path / "never")
    assert not (tmp_path / "never").exists()


# --- one typed answer per question ----------------------------------------------------------


def test_the_devices_of_a_run_come_from_the_record_else_from_its_modes():
    results = read_results(FIXTURES / "report_2slots.json")
    assert results.device_ids == ("cpu:0", "cpu:1")
    assert results.on_cpu_slots and results.device_kind == "cpu" and results.device_count == 2
    unrecorded = replace(results, config=RunRecord.of({"case": "cnn", "devices": "cuda"}),
                         devices=())
    gpus = unrecorded.with_modes((_mode("serial", devices=("cuda:2",)),
                                  _mode("multi-gpu", devices=("cuda:10", "cuda:2"))))
    assert gpus.device_ids == ("cuda:2", "cuda:10")  # GPUs in index order
    assert not gpus.on_cpu_slots and gpus.device_kind == "cuda" and gpus.device_count == 2
    mixed = gpus.with_modes((*gpus.modes, _mode("x", devices=("cpu:0",))))
    assert not mixed.on_cpu_slots and mixed.device_kind == "cpu+cuda"
    nothing = gpus.with_modes(())
    assert nothing.device_ids == () and not nothing.on_cpu_slots
    assert nothing.device_kind == "cuda"  # from --devices cuda
    assert _mode("serial", devices=("cpu:1",)).on_cpu_slots
    assert not _mode("serial").on_cpu_slots
