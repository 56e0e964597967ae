"""How many clients per device: the workers-per-device sweep, its knee and client_resources,
the refusal of a value that cannot fit, and the FAQ section written from the sweep."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from gpubench.config import RunConfig, SampleSizes, TrainConfig
from gpubench.report.sweep_page import format_knees
from gpubench.results import ModeResult, Results, WorkerMemory
from gpubench.run.sweep import (
    client_resources,
    headroom,
    knee,
    run_sweep,
    summarize,
    with_reference,
)
from gpubench.sweep_summary import ClientResources, Headroom, ModeRow, SweepSummary

GIB = 2**30


def _row(name: str, clients_per_s: float | None, *, status: str = "ok", same: bool | None = True,
         speedup: float | None = None, workers: int = 2) -> ModeRow:
    return ModeRow(name=name, status=status, clients_per_s=clients_per_s, same_result=same,
                   speedup_vs_serial=speedup, workers=workers, round_s=1.0,
                   worker_device_bytes=None, worker_host_bytes=GIB)


# --- the knee -----------------------------------------------------------------------------------


def test_knee_is_the_smallest_value_within_5_percent_of_the_best():
    rows = [(1, _row("ray", 10.0, workers=2)), (2, _row("ray", 18.0, workers=4)), (4, _row("ray", 19.2, workers=8)),
            (8, _row("ray", 20.0, workers=16))]
    k = knee(rows)
    assert k is not None
    assert (k["value"], k["best_value"], k["basis"]) == (4, 8, "clients_per_s")
    assert k["of_best"] == pytest.approx(0.96)
    # 18.9 is 94.5% of 20: not within 5%, so the knee moves to the best itself.
    rows[2] = (4, _row("ray", 18.9, workers=8))
    assert knee(rows)["value"] == 8


def test_a_failed_or_wrong_value_is_never_the_best_nor_the_knee():
    rows = [(1, _row("ray", 10.0, workers=2)), (2, _row("ray", 19.0, workers=4)),
            (4, _row("ray", 50.0, same=False, workers=8)),  # faster, but computed something else
            (8, _row("ray", None, status="failed", workers=16)), (16, _row("ray", 99.0, status="failed", workers=32))]
    k = knee(rows)
    assert (k["value"], k["best_value"]) == (2, 2)
    assert knee([(1, _row("ray", 5.0, same=False, workers=2))]) is None


def test_the_knee_reads_clients_per_second_over_serials_when_every_value_has_it():
    # clients/s drifted down at 4 (a busy machine), but against serial in the same run, 4 is
    # as good as 2; the speedup over serial (another figure) is not what ranks the knee.
    rows = [(1, replace(_row("ray", 10.0, speedup=1.9, workers=2), clients_vs_serial=1.0)),
            (2, replace(_row("ray", 19.0, speedup=1.0, workers=4), clients_vs_serial=1.9)),
            (4, replace(_row("ray", 15.0, speedup=1.0, workers=8), clients_vs_serial=1.95))]
    k = knee(rows)
    assert (k["basis"], k["value"], k["best_value"]) == ("clients_vs_serial", 2, 4)
    assert k["clients_vs_serial"] == 1.9


def test_a_value_that_ran_no_more_workers_than_a_smaller_one_is_not_the_knee():
    # 4 clients on two slots: at 4 per device only 4 workers ran, as at 2 per device; its
    # better speedup is noise of the same setting, and 0.25 CPUs per client never ran.
    rows = [(1, _row("ray", 6.5, speedup=1.09, workers=2)),
            (2, _row("ray", 21.0, speedup=1.61, workers=4)),
            (4, _row("ray", 16.7, speedup=1.93, workers=4))]
    k = knee(rows)
    assert (k["value"], k["best_value"]) == (2, 2)


def test_client_resources_on_gpus_and_on_cpu_slots():
    gpu = {"cpu_slots": False, "devices": ["cuda:0"], "cpu_count": 16}
    assert client_resources(4, gpu) == ClientResources(num_gpus=0.25, num_cpus=1.0)
    assert client_resources(3, gpu) == ClientResources(0.33, 1.0)  # never more than 1/3
    # 8 host cores for 16 clients on one GPU: half a CPU each, or Ray places only 8.
    assert client_resources(16, {**gpu, "cpu_count": 8}) == ClientResources(0.06, 0.5)
    slots = {"cpu_slots": True, "devices": ["cpu:0", "cpu:1"], "slot_cores": [2, 2]}
    assert client_resources(4, slots) == ClientResources(0.0, 0.5)
    # What the run was told wins.
    told = {**gpu, "gpus_per_worker": 0.5, "cpus_per_worker": 2.0}
    assert client_resources(4, told) == ClientResources(0.5, 2.0)


def test_headroom_of_a_gpu_and_of_the_host():
    row = replace(_row("ray", 1.0, workers=4), worker_device_bytes=3 * GIB)
    gpu = {"cpu_slots": False, "devices": ["cuda:0"], "device_total": {"cuda:0": 80 * GIB},
           "device_peak": {("4", "ray"): {"cuda:0": 30 * GIB}}}
    room = headroom(4, row, gpu)
    assert (room.of, room.bytes) == ("device", 50 * GIB)
    assert room.fraction == pytest.approx(50 / 80)
    # Without the monitor's peak: the workers' reserved peaks (4 x 3 GiB), a floor of the use.
    assert headroom(4, row, {**gpu, "device_peak": {}}).bytes == 68 * GIB
    cpu = {"cpu_slots": True, "devices": ["cpu:0"], "host_available": 10 * GIB}
    assert headroom(4, row, cpu) == Headroom("host", 6 * GIB, 0.6)


# --- a crafted sweep ----------------------------------------------------------------------------


def _results(k: int, serial_s: float, mode_s: dict[str, float | str | None], same: bool = True,
             cuda: bool = False) -> Results:
    dev = [f"cuda:{i}" for i in range(1)] if cuda else ["cpu:0", "cpu:1"]
    modes = [ModeResult("serial", "ok", devices=(dev[0],), round_times_s=(serial_s,),
                        speedup_vs_serial=1.0, same_result=None,
                        worker_memory=(WorkerMemory(0, dev[0], 1, rss_bytes=GIB),))]
    for name, s in mode_s.items():
        if s is None:
            modes.append(ModeResult(name, "not_applicable", error="MPS needs a CUDA GPU"))
            continue
        if isinstance(s, str):  # the mode failed with this error
            modes.append(ModeResult(name, "failed", devices=tuple(dev), error=s))
            continue
        workers = k * len(dev)
        mem = tuple(WorkerMemory(w, dev[w % len(dev)], 100 + w, 2 * GIB if cuda else None,
                                 3 * GIB if cuda else None, GIB // 2) for w in range(workers))
        modes.append(ModeResult(name, "ok", devices=tuple(dev), workers=workers,
                                round_times_s=(s,), speedup_vs_serial=serial_s / s,
                                same_result=same, worker_memory=mem))
    devices = tuple({"id": d, "kind": "cuda" if cuda else "cpu", "cores": [] if cuda else [i],
                     "memory_total_bytes": 80 * GIB if cuda else None} for i, d in enumerate(dev))
    return Results(
        environment={"cpu_count": 8},
        config={"clients": 16, "samples": [64] * 16, "device_ids": dev, "workers_per_device": k},
        modes=tuple(modes), devices=devices,
        memory_plan={"estimate": {"host_available": 20 * GIB}},
    )


TABLE = {1: (8.0, {"multi-gpu": 4.0, "multi-gpu+mps": None, "ray": 5.0}),
         2: (8.0, {"multi-gpu": 2.2, "multi-gpu+mps": None, "ray": 2.6}),
         4: (8.0, {"multi-gpu": 2.1, "multi-gpu+mps": None, "ray": 2.0})}


def crafted_summary(tmp_path: Path, refused: int | None = None, cuda: bool = False,
                    table: dict | None = None) -> SweepSummary:
    from gpubench.run.sweep import Refusal

    table = table or TABLE
    points = [(k, RunConfig(workers_per_device=k)) for k in table]
    prepared = [Refusal("cuda:0 needs about 90 GiB") if k == refused else None for k in table]

    def fake_compare(config, **kwargs):
        serial, modes = table[config.workers_per_device]
        return _results(config.workers_per_device, serial, modes, cuda=cuda)

    sweep = run_sweep("workers_per_device", points, tmp_path, compare_fn=fake_compare,
                      prepared=prepared)
    return summarize(sweep)


def test_summary_has_clients_per_second_and_memory_per_value_and_mode(tmp_path):
    summary = crafted_summary(tmp_path)
    rows = {(p.value, m.name): m for p in summary.points for m in p.modes}
    assert rows[(2, "multi-gpu")].clients_per_s == pytest.approx(16 / 2.2)
    assert rows[(2, "multi-gpu")].workers == 4
    assert rows[(2, "multi-gpu")].worker_host_bytes == GIB // 2
    assert rows[(4, "ray")].speedup_vs_one == pytest.approx(5.0 / 2.0)
    assert rows[(1, "multi-gpu+mps")].status == "not_applicable"
    assert summary.per_device is not None
    knees = summary.per_device.knees
    assert knees["multi-gpu"].value == 2  # 2.2 s is within 5% of 2.1 s
    assert knees["ray"].value == 4
    assert "multi-gpu+mps" not in knees  # not applicable at every value: no knee to name
    assert knees["ray"].client_resources == ClientResources(num_gpus=0.0, num_cpus=0.25)
    assert summary.per_device.reference == "serial" and "serial" not in knees
    text = format_knees(summary)
    assert 'client_resources={"num_gpus": 0, "num_cpus": 0.25}' in text
    assert "knee, multi-gpu: 2 worker(s) per device" in text and "about the cores" in text


def test_a_refused_value_is_in_the_summary_with_its_reason_and_the_rest_still_run(tmp_path):
    summary = crafted_summary(tmp_path, refused=4)
    assert summary.refused == {"4": "cuda:0 needs about 90 GiB"}
    point = next(p for p in summary.points if p.value == 4)
    assert point.modes == () and point.file is None
    assert summary.per_device is not None
    assert summary.per_device.knees["ray"].value == 2  # from the values that ran
    assert sorted(f.name for f in tmp_path.glob("*.json")) == [
        "workers_per_device-1.json", "workers_per_device-2.json"]


def test_serial_is_added_as_the_reference_of_a_workers_per_device_sweep():
    cfg = RunConfig(modes=("multi-gpu", "ray"))
    assert with_reference("workers_per_device", cfg).modes == ("serial", "multi-gpu", "ray")
    assert with_reference("batch_size", cfg).modes == ("multi-gpu", "ray")
    both = RunConfig(modes=("ray", "serial"))
    assert with_reference("workers_per_device", both).modes == ("ray", "serial")


# --- the command: refusal before start, exit codes ----------------------------------------------

TINY = ["--case", "mlp", "--clients", "4", "--samples-per-client", "64", "--batch-size", "32",
        "--rounds", "1", "--warmup", "0", "--devices", "cpu:2", "--sample-interval", "0",
        "--quiet"]


@pytest.mark.slow
def test_a_value_that_cannot_fit_is_refused_before_its_workers_start(tmp_path, monkeypatch,
                                                                     capsys):
    from gpubench.cli import main
    from gpubench.modes.multiprocess import MultiGpuMode
    from gpubench.run import memplan
    from gpubench.run import prepare as preparing
    from gpubench.run.prepare import prepare

    # The plan counts this process's resident memory; held still, so that the estimates made
    # here and the sweep's own are made alike (it grows as other tests run in this process).
    monkeypatch.setattr(preparing, "process_rss", lambda: 600 << 20)

    def config(k: int) -> RunConfig:
        train = TrainConfig(batch_size=32, samples=SampleSizes(64, 64))
        return RunConfig(case="mlp", clients=4, train=train, devices="cpu:2", warmup=0,
                         rounds=1, modes=("serial", "multi-gpu"), workers_per_device=k,
                         sample_interval_s=None)

    one, four = (prepare(config(k), check_fit=False).memory.host_bytes for k in (1, 4))
    assert four > one
    monkeypatch.setattr(memplan, "_host_available", lambda: (one + four) // 2)
    started: list[int] = []
    real_start = MultiGpuMode.start

    def counting_start(self):
        started.append(self.plan.config.workers_per_device)
        return real_start(self)

    monkeypatch.setattr(MultiGpuMode, "start", counting_start)
    out = tmp_path / "sweep"
    code = main(["sweep", *TINY, "--modes", "multi-gpu", "--workers-per-device", "1,4",
                 "--out-dir", str(out)])
    assert code == 0
    assert started == [1]  # the refused value's workers never started
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["refused"]) == ["4"]
    assert "of host memory" in summary["refused"]["4"]
    assert not (out / "workers_per_device-4.json").exists()
    printed = capsys.readouterr().out
    assert "--workers-per-device 4: refused before it started: the run needs about" in printed
    assert "client_resources=" in printed


def test_every_value_refused_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    from gpubench.cli import main
    from gpubench.run import memplan

    monkeypatch.setattr(memplan, "_host_available", lambda: 1 << 20)
    code = main(["sweep", *TINY, "--modes", "multi-gpu", "--workers-per-device", "1,2",
                 "--out-dir", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "of host memory" in err[0] and "Traceback" not in err[0]


def test_the_sweep_exits_1_when_a_value_computed_something_else(tmp_path, monkeypatch, capsys):
    from gpubench import api
    from gpubench.cli import main

    def wrong_at_two(config, **kwargs):
        k = config.workers_per_device
        return _results(k, 4.0, {"multi-gpu": 2.0}, same=k != 2)

    monkeypatch.setattr(api, "_measure_point", wrong_at_two)
    args = ["sweep", *TINY, "--modes", "multi-gpu", "--workers-per-device", "1,2", "--out-dir"]
    assert main([*args, str(tmp_path / "a")]) == 1
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    rows = {p["value"]: p["modes"][1] for p in summary["points"]}
    assert rows[2]["same_result"] is False and rows[1]["same_result"] is True
    assert summary["per_device"]["knees"]["multi-gpu"]["value"] == 1  # 2 is no success
    monkeypatch.setattr(api, "_measure_point",
                        lambda config, **kw: _results(config.workers_per_device, 4.0,
                                                      {"multi-gpu": 2.0}))
    assert main([*args, str(tmp_path / "b")]) == 0


# --- the value changes the actors per device in every mode --------------------------------------


@pytest.mark.slow
def test_workers_per_device_sets_the_workers_a_run_starts(tmp_path):
    from gpubench.api import sweep_points

    train = TrainConfig(batch_size=32, samples=SampleSizes(32, 32))
    base = RunConfig(case="mlp", clients=4, train=train, devices="cpu:1", warmup=0, rounds=1,
                     modes=("multi-gpu",), sample_interval_s=None)
    # One point, 2 on the one slot: a value ignored would leave the default 1. Ray's and
    # Flower's actors are sized from the same plan (the test below); they start them in
    # the other ray and flower tests.
    points = [(2, replace(base, workers_per_device=2))]
    sweep = sweep_points("workers_per_device", points, tmp_path)
    assert [p.value for p in sweep.points] == [2]
    for p in sweep.points:
        assert p.results is not None
        assert p.results.mode("serial") is not None  # the reference was added
        m = p.results.mode("multi-gpu")
        assert m is not None and m.ok and m.same_result is True, m and m.error
        assert m.workers == p.value
        assert len({w.pid for w in m.worker_memory}) == p.value  # that many processes ran
        assert {w.device for w in m.worker_memory} == {"cpu:0"}


def test_multi_gpu_and_ray_place_workers_per_device_on_each_device():
    # The real run above uses one slot; the placement over two is the plan's.
    from gpubench.machine.devices import resolve_devices
    from gpubench.modes.base import Plan
    from gpubench.modes.multiprocess import MultiGpuMode
    from gpubench.modes.ray_common import local_cluster_size, worker_resources
    from gpubench.modes.ray_mode import RayMode

    devices = resolve_devices("cpu:2").devices
    for k in (1, 2, 4):
        plan = Plan(RunConfig(clients=16, workers_per_device=k), devices, (8,) * 16, 10)
        ray = RayMode(plan)
        for mode in (MultiGpuMode(plan), ray):
            per_device = {d: sum(s.device.id == d for s in mode.specs) for d in ("cpu:0", "cpu:1")}
            assert per_device == {"cpu:0": k, "cpu:1": k}, (mode.name, k)
            trained = sorted(c for s in mode.specs for c in s.clients)
            assert trained == list(range(16)), (mode.name, k)  # each client once
        # and a local Ray holds every actor the ray mode starts
        needed = [worker_resources(plan, s.device) for s in ray.specs]
        cpus, _ = local_cluster_size(plan, needed)
        assert cpus >= sum(r.cpus for r in needed) and len(needed) == 2 * k


def test_flower_starts_workers_per_device_actors_on_each_device():
    from gpubench.machine.devices import resolve_devices
    from gpubench.modes.base import Plan
    from gpubench.modes.flower import FlowerMode, federation_config

    devices = resolve_devices("cpu:2").devices
    for k in (1, 2, 4):
        plan = Plan(RunConfig(clients=16, workers_per_device=k), devices, (8,) * 16, 10)
        assert FlowerMode(plan).workers == 2 * k
        config = federation_config(plan)
        # the local Ray holds them all
        assert config["init-args-num-cpus"] // config["client-resources-num-cpus"] == 2 * k


# --- the FAQ section ----------------------------------------------------------------------------


def _crafted_faq_summary(tmp_path: Path, cuda: bool = True) -> SweepSummary:
    # multi-gpu failed at 2: marked, never the knee
    table = {**TABLE, 2: (8.0, {**TABLE[2][1], "multi-gpu": "worker 3 died"})}
    return crafted_summary(tmp_path, refused=4, cuda=cuda, table=table)


def test_the_faq_section_renders_en_and_zh_from_a_sweep(tmp_path):
    from gpubench.faq.inputs import FaqInputs
    from gpubench.report.faq_clients import format_clients_section, write_clients_plots

    inputs = FaqInputs(clients_sweeps=(_crafted_faq_summary(tmp_path),))
    plots = write_clients_plots(inputs, tmp_path, "faq.en", "en")
    assert plots["clients-1"].path is not None
    assert plots["clients-1"].path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    en = "\n\n".join(format_clients_section(inputs, "en", plots))
    assert en.startswith("## How many clients per device?")
    assert '`client_resources={"num_gpus": 0.5, "num_cpus": 1}`' in en  # ray's knee: 2
    assert "**ray: the knee is 2 per device**" in en
    assert "**multi-gpu: the knee is 1 per device**" in en  # 2 failed, 4 was refused
    assert "✗ failed: worker 3 died" in en
    assert "refused before it started: cuda:0 needs about 90 GiB" in en
    assert "not applicable: MPS needs a CUDA GPU" in en
    assert "![Clients/s over serial's against workers per device](faq.en-clients-1.png)" in en
    assert "CPU slots" not in en and "Calculated" not in en
    zh = "\n\n".join(format_clients_section(inputs, "zh"))
    assert zh.startswith("## 每个设备放几个客户端？")
    assert "拐点是每设备 2 个" in zh and "启动前被拒绝" in zh and "✗ 失败：worker 3 died" in zh
    assert '`client_resources={"num_gpus": 0.5, "num_cpus": 1}`' in zh


def test_on_cpu_slots_the_section_says_the_knee_is_about_the_cores(tmp_path):
    from gpubench.faq.inputs import FaqInputs
    from gpubench.report.faq_clients import format_clients_section

    inputs = FaqInputs(clients_sweeps=(_crafted_faq_summary(tmp_path, cuda=False),))
    assert "this knee is about the cores, not about a GPU" in "\n".join(
        format_clients_section(inputs, "en"))
    assert "拐点反映的是 CPU 核心" in "\n".join(format_clients_section(inputs, "zh"))


def test_without_a_sweep_the_advice_is_calculated_not_measured(tmp_path):
    from gpubench.faq.inputs import FaqInputs
    from gpubench.report.faq_clients import (
        format_clients_section,
        num_gpus_advice,
        write_clients_plots,
    )

    none = FaqInputs()
    assert "*Calculated, not measured*" in "\n".join(format_clients_section(none, "en"))
    assert "*计算值，并非实测*" in "\n".join(format_clients_section(none, "zh"))
    assert write_clients_plots(none, tmp_path, "faq.en", "en") == {}
    calculated = ['Flower/Ray: `client_resources={"num_gpus": 0.1}` fits']
    kept = num_gpus_advice(none, "en", calculated)
    assert kept[0] == calculated[0] and "Calculated, not measured" in kept[1]
    swept = FaqInputs(clients_sweeps=(_crafted_faq_summary(tmp_path),))
    replaced = num_gpus_advice(swept, "en", calculated)
    assert calculated[0] not in replaced
    assert '**Measured**' in replaced[0] and '"num_gpus": 0.5' in replaced[0]


def test_the_faq_page_replaces_the_calculated_num_gpus_with_the_measured_one(tmp_path):
    from dataclasses import replace as with_

    from gpubench.report import faq_page
    from tests.test_faq import two_gpu_inputs

    plain = faq_page.format_faq(two_gpu_inputs(), "en")
    assert "*Calculated, not measured*" in plain and "**Measured**" not in plain
    swept = with_(two_gpu_inputs(), clients_sweeps=(_crafted_faq_summary(tmp_path),))
    (page,) = faq_page.write_faq(swept, tmp_path, ["en"])
    text = page.read_text()
    assert "**Measured** (it replaces the calculation from memory)" in text
    assert "Flower/Ray: `client_resources" not in text  # the calculated line is gone
    assert "## How many clients per device?" in text and (tmp_path / "faq.en-clients-1.png").exists()


def test_gpubench_faq_reads_a_clients_sweep_folder_and_refuses_a_wrong_one(tmp_path):
    from tests.conftest import cli_in_process

    summary = _crafted_faq_summary(tmp_path / "sweep")
    (tmp_path / "sweep" / "summary.json").write_text(summary.to_json())
    other = tmp_path / "other"
    other.mkdir()
    (other / "summary.json").write_text(json.dumps({"parameter": "batch_size", "points": [],
                                                    "per_device": {}}))
    results = next((tmp_path / "sweep").glob("workers_per_device-1.json"))
    ok = cli_in_process("faq", "--out", str(tmp_path / "faq"), "--from", str(results),
                        "--clients-sweep", str(tmp_path / "sweep"))
    assert ok.returncode == 0, ok.stderr
    assert "拐点" in (tmp_path / "faq" / "faq.zh.md").read_text()
    bad = cli_in_process("faq", "--out", str(tmp_path / "faq2"), "--from", str(results),
                         "--clients-sweep", str(other))
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not the summary of a gpubench sweep --workers-per-device" \
        in lines[0] and "Traceback" not in bad.stderr
    future = tmp_path / "future"
    future.mkdir()
    (future / "summary.json").write_text(json.dumps({**summary.to_dict(), "schema_version": 99}))
    newer = cli_in_process("faq", "--out", str(tmp_path / "faq3"), "--from", str(results),
                           "--clients-sweep", str(future))
    assert newer.returncode == 2 and "schema_version 99 is newer" in newer.stderr


def test_several_sweeps_give_one_part_and_one_plot_each(tmp_path):
    from gpubench.faq.inputs import FaqInputs
    from gpubench.report.faq_clients import format_clients_section, write_clients_plots

    heavy = _crafted_faq_summary(tmp_path / "a")
    host = _crafted_faq_summary(tmp_path / "b", cuda=False)
    heavy = replace(heavy, per_device=replace(heavy.per_device, case="resnet18"))
    host = replace(host, per_device=replace(host.per_device, case="cnn", preset="flower-like"))
    inputs = FaqInputs(clients_sweeps=(heavy, host))
    plots = write_clients_plots(inputs, tmp_path, "faq.zh", "zh")
    assert sorted(plots) == ["clients-1", "clients-2"]
    en = "\n\n".join(format_clients_section(inputs, "en", plots))
    assert "### The client: `resnet18`" in en
    assert "### The client: `cnn`, `--preset flower-like`" in en
    assert en.index("(faq.zh-clients-1.png)") < en.index("### The client: `cnn`") < en.index(
        "(faq.zh-clients-2.png)")
    assert en.count("this knee is about the cores") == 1  # said once, for the CPU-slot sweep
