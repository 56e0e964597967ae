"""One metric per table in "how many clients per device": the "vs 1" column is the ratio of the
clients/s beside it, the knee is ranked by clients/s over serial's in the same run, a value that
ran the same workers as a smaller one is shown once, a mode far below serial gets a finding and
no client_resources, and a version-2 summary is upgraded to these figures."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gpubench.faq.inputs import FaqInputs
from gpubench.report import faq_clients
from gpubench.report.faq_clients import advice_knee, format_clients_section, num_gpus_advice
from gpubench.report.sweep_page import format_per_device_table
from gpubench.run.sweep import per_device
from gpubench.sweep_summary import (
    FAR_BELOW,
    ModeRow,
    SummaryPoint,
    SweepSummary,
    load_sweep_summary,
    with_ratios,
)

GIB = 2**30
MACHINE = {"cpu_slots": True, "devices": ["cpu:0", "cpu:1"], "slot_cores": [2, 2],
           "host_available": 20 * GIB}
CLIENTS = 8


def _row(name: str, clients_per_s: float, speedup: float, workers: int) -> ModeRow:
    return ModeRow(name, "ok", round_s=CLIENTS / clients_per_s, clients_per_s=clients_per_s,
                   speedup_vs_serial=speedup, same_result=True, workers=workers,
                   worker_host_bytes=GIB)


def _summary(table: dict[int, tuple[float, dict[str, tuple[float, float, int]]]]) -> SweepSummary:
    """A workers-per-device summary as the sweep derives it, from (serial clients/s, {mode:
    (clients/s, speedup over serial, workers)}) per value."""
    points = [SummaryPoint(k, f"workers_per_device-{k}.json", False,
                           (ModeRow("serial", "ok", round_s=CLIENTS / serial,
                                    clients_per_s=serial, speedup_vs_serial=1.0, workers=1),
                            *(_row(n, *v) for n, v in modes.items())))
              for k, (serial, modes) in table.items()]
    points = with_ratios(points)
    return SweepSummary("workers_per_device", "--workers-per-device", tuple(table),
                        tuple(points), per_device=per_device(points, MACHINE))


# Serial's own clients/s drifted 10 -> 10 -> 20. ray's speedups over serial (another figure,
# a median of per-round ratios) say 4 is best and rise 1.0 -> 1.2 -> 2.0; its clients/s say
# 10 -> 19 -> 24, and over serial's in the same run 1.0 -> 1.9 -> 1.2: the knee is 2.
DISAGREE = {1: (10.0, {"ray": (10.0, 1.0, 2)}), 2: (10.0, {"ray": (19.0, 1.2, 4)}),
            4: (20.0, {"ray": (24.0, 2.0, 8)})}


def _cells(section: str, value: int, mode: str) -> list[str]:
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 5 and cells[0] == str(value) and cells[1] == mode:
            return cells
    raise AssertionError(f"no row {value} {mode}")


def test_vs_one_is_the_ratio_of_clients_per_second_and_the_knee_follows_it_over_serial():
    summary = _summary(DISAGREE)
    rows = {(p.value, m.name): m for p in summary.points for m in p.modes}
    assert rows[(2, "ray")].speedup_vs_one == pytest.approx(1.9)  # 19 / 10, not 1.2 / 1.0
    assert rows[(4, "ray")].speedup_vs_one == pytest.approx(2.4)
    assert rows[(4, "ray")].clients_vs_serial == pytest.approx(1.2)  # 24 / serial's 20
    assert summary.per_device is not None
    knee = summary.per_device.knees["ray"]
    assert knee is not None
    assert (knee.value, knee.best_value, knee.basis) == (2, 2, "clients_vs_serial")
    section = "\n\n".join(format_clients_section(FaqInputs(clients_sweeps=(summary,)), "en"))
    # k, mode, workers, clients/s, vs 1, ÷ serial: each ratio reads from the columns beside it
    assert _cells(section, 2, "ray")[2:6] == ["4", "19", "1.90x", "1.90x"]
    assert _cells(section, 4, "ray")[2:6] == ["8", "24", "2.40x", "1.20x"]
    assert "÷ serial (same run; ranks the knee)" in section
    assert ("**ray: the knee is 2 per device** (19 clients/s, 1.90x serial's clients/s in the "
            "same run: 100% of the best such ratio, measured at 2)") in section
    page = format_per_device_table(summary)
    assert "knee, ray: 2 worker(s) per device, 19 clients/s, 1.90x serial's" in page


def test_a_value_that_ran_the_same_workers_as_a_smaller_one_is_shown_once(monkeypatch, tmp_path):
    # 4 clients on two slots: 4 per device ran the same 4 workers as 2 per device, faster by
    # noise; it is marked as that setting again, never the knee, never a point of the plot.
    table = {1: (10.0, {"multi-gpu": (6.5, 0.7, 2)}), 2: (10.0, {"multi-gpu": (21.0, 2.1, 4)}),
             4: (10.0, {"multi-gpu": (30.0, 3.0, 4)})}
    summary = _summary(table)
    row = summary.points[2].mode("multi-gpu")
    assert row is not None and row.same_workers_as == 2
    assert row.speedup_vs_one is None and row.clients_vs_serial is None
    assert summary.per_device is not None
    knee = summary.per_device.knees["multi-gpu"]
    assert knee is not None and (knee.value, knee.best_value) == (2, 2)
    section = "\n\n".join(format_clients_section(FaqInputs(clients_sweeps=(summary,)), "en"))
    cells = _cells(section, 4, "multi-gpu")
    assert cells[3:6] == ["—", "—", "—"] and "30" not in cells
    assert cells[-1] == "same workers as 2 per device: shown there"
    assert "same workers as 2" in format_per_device_table(summary)

    drawn = _drawn(monkeypatch, tmp_path, summary)
    assert drawn["multi-gpu"] == [(0, pytest.approx(0.65)), (1, pytest.approx(2.1))]


def _drawn(monkeypatch: Any, tmp_path: Any, summary: SweepSummary) -> dict[str, Any]:
    """The left panel's labelled lines as (x, y) pairs, and its stars and horizontal lines."""
    import gpubench.report.figures as figures

    caught = {}

    def keep(fig: Any, path: Any) -> Any:
        caught["fig"] = fig
        return path

    monkeypatch.setattr(figures, "write_figure", keep)
    faq_clients.draw_clients(summary, tmp_path / "x.png", "en")
    ax = caught["fig"].axes[0]
    out: dict[str, Any] = {"stars": [], "flat": []}
    for line in ax.get_lines():
        xs, ys = list(line.get_xdata()), list(line.get_ydata())
        if line.get_marker() == "*":
            out["stars"].append((xs[0], ys[0], line.get_color()))
        elif len(set(ys)) == 1 and line.get_marker() in ("None", "", None):
            out["flat"].append(ys[0])
        elif not line.get_label().startswith("_"):
            out[line.get_label()] = list(zip(xs, ys, strict=True))
    return out


def test_the_plot_draws_serial_at_1_and_knees_at_one_value_apart(monkeypatch, tmp_path):
    table = {1: (10.0, {"multi-gpu": (18.0, 1.8, 2), "ray": (17.0, 1.7, 2)}),
             2: (10.0, {"multi-gpu": (12.0, 1.2, 4), "ray": (11.0, 1.1, 4)})}
    summary = _summary(table)
    assert summary.per_device is not None
    assert [k.value for k in summary.per_device.knees.values() if k] == [1, 1]
    drawn = _drawn(monkeypatch, tmp_path, summary)
    assert 1.0 in drawn["flat"]  # serial's line
    (xa, ya, ca), (xb, yb, cb) = drawn["stars"]
    assert (ya, yb) == (pytest.approx(1.8), pytest.approx(1.7))  # each on its own mode's ratio
    assert round(xa) == round(xb) == 0 and abs(xa - xb) > 0.05 and ca != cb


def test_a_mode_far_below_serial_is_named_and_recommends_no_client_resources():
    table = {1: (10.0, {"multi-gpu": (15.0, 1.5, 2), "ray": (1.5, 0.9, 2)}),
             2: (10.0, {"multi-gpu": (18.0, 1.8, 4), "ray": (1.4, 0.9, 4)})}
    summary = _summary(table)
    assert summary.per_device is not None
    assert summary.per_device.far_below == {"ray": pytest.approx(0.15)}
    assert "ray" not in summary.per_device.knees
    section = "\n\n".join(format_clients_section(FaqInputs(clients_sweeps=(summary,)), "en"))
    assert (f"⚠ **ray runs far below serial**: at every value its clients/s was at most "
            f"0.15x serial's in the same run (under {FAR_BELOW:g}x)") in section
    assert "**ray: the knee" not in section
    zh = "\n".join(format_clients_section(FaqInputs(clients_sweeps=(summary,)), "zh"))
    assert "远慢于串行" in zh
    found = advice_knee(summary)
    assert found is not None and found[0] == "multi-gpu"
    assert "ray: far below serial" in format_per_device_table(summary)
    # Below the line at one value only is not far below: it has a knee.
    table[2][1]["ray"] = (6.0, 0.9, 4)
    assert "ray" in (_summary(table).per_device or summary.per_device).knees


def _as_version_2(summary: SweepSummary, old_knees: dict[str, int]) -> dict[str, Any]:
    """The summary as version 2 wrote it: ``speedup_vs_one`` a ratio of speedups over serial,
    no ratio to serial's clients/s, no mark of a repeated setting, knees by the speedup."""
    data = json.loads(summary.to_json())
    data["schema_version"] = 2
    first: dict[str, float] = {}
    for p in data["points"]:
        for m in p["modes"]:
            del m["clients_vs_serial"], m["same_workers_as"]
            if m["name"] != "serial" and m["status"] == "ok":
                first.setdefault(m["name"], m["speedup_vs_serial"])
                m["speedup_vs_one"] = m["speedup_vs_serial"] / first[m["name"]]
    info = data["per_device"]
    del info["far_below"]
    for name, value in old_knees.items():
        knee = info["knees"][name]
        del knee["clients_vs_serial"]
        knee.update(value=value, basis="speedup_vs_serial",
                    client_resources={"num_gpus": 0.0, "num_cpus": 2.0 / value})
    return data


def test_a_version_2_summary_is_upgraded_to_one_metric_and_still_renders(tmp_path):
    table = {**DISAGREE, 1: (10.0, {"ray": (10.0, 1.0, 2), "flower": (10.0, 1.0, 2)}),
             2: (10.0, {"ray": (19.0, 1.2, 4), "flower": (19.0, 1.2, 4)}),
             4: (20.0, {"ray": (24.0, 2.0, 4), "flower": (24.0, 2.0, 8)})}
    now = _summary(table)
    # ray at 4 ran 4 workers, as at 2; flower's knee was 4 by the speedup and moves to 2.
    old = _as_version_2(now, {"ray": 2, "flower": 4})
    (tmp_path / "summary.json").write_text(json.dumps(old))
    upgraded = load_sweep_summary(tmp_path)
    assert upgraded.points == now.points
    assert upgraded.per_device is not None
    ray, flower = upgraded.per_device.knees["ray"], upgraded.per_device.knees["flower"]
    assert ray is not None and flower is not None
    assert ray.value == 2 and ray.client_resources is not None  # stayed: its resources kept
    assert ray.client_resources.num_cpus == 1.0
    assert flower.value == 2 and flower.client_resources is None  # moved: not recorded
    assert flower.basis == "clients_vs_serial" and flower.workers == 4
    section = "\n\n".join(format_clients_section(FaqInputs(clients_sweeps=(upgraded,)), "en"))
    assert "**flower: the knee is 2 per device**" in section
    assert "`client_resources` not recorded" in section
    assert advice_knee(upgraded) is not None and advice_knee(upgraded)[0] == "ray"
    assert "client_resources: not recorded" in format_per_device_table(upgraded)
    assert '"num_cpus": 1' in num_gpus_advice(FaqInputs(clients_sweeps=(upgraded,)), "en", [])[0]
    # The upgraded summary writes as version 3 and reads back the same.
    assert load_sweep_summary(json.loads(upgraded.to_json())) == upgraded


def test_a_flower_like_sweep_of_version_2_names_ray_far_below_and_recommends_none_from_it():
    from pathlib import Path

    # once committed under docs/faq/cpu-slots/results/clients/flower-like/, before version 3
    path = Path(__file__).resolve().parent / "fixtures" / "clients-flower-like-summary-v2.json"
    summary = load_sweep_summary(path)
    assert summary.per_device is not None and "ray" in summary.per_device.far_below
    assert "ray" not in summary.per_device.knees
    section = "\n".join(format_clients_section(FaqInputs(clients_sweeps=(summary,)), "en"))
    assert "**ray runs far below serial**" in section
    found = advice_knee(summary)
    assert found is None or found[0] != "ray"
