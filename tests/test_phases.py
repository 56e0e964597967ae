"""Where each client's time goes: phases in every mode, the phase findings, the summary
column, the phase plot, and the counterfactual rows that say which setting moved threads."""

from __future__ import annotations

import multiprocessing.forkserver
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from gpubench.commands.arguments import add_run_arguments, config_from_args
from gpubench.config import RunConfig
from gpubench.findings import compute_findings
from gpubench.findings.phases import largest_phase, phase_means
from gpubench.report.findings import finding_text
from gpubench.report.plots import write_plots
from gpubench.report.tables import format_summary_table
from gpubench.results import PHASES, ClientTiming, ModeResult, Results, RoundRecord
from gpubench.run.explain import row_name, suspects, with_counterfactuals
from gpubench.run.harness import compare


@pytest.fixture(autouse=True)
def stop_forkserver():
    yield
    multiprocessing.forkserver._forkserver._stop()


def client(c: int, device: str = "cpu:0", **phases: float) -> ClientTiming:
    full = {p: phases.get(p, 0.0) for p in PHASES}
    total = sum(full.values())
    return ClientTiming(c, device, 0, 32, full["setup"], full["compute"], full["write"], 0.0,
                        total, phases=full)


def mode(name: str, round_s: float, workers: int = 1, **phases: float) -> ModeResult:
    rounds = tuple(RoundRecord(i, False, round_s, (client(0, **phases), client(1, **phases)))
                   for i in range(3))
    return ModeResult(name, "ok", devices=("cpu:0",), workers=workers,
                      round_times_s=(round_s,) * 3, rounds=rounds, same_result=True)


def results(*modes: ModeResult, **config: Any) -> Results:
    return Results(environment={}, config={"case": "cnn", "device_ids": ["cpu:0"], **config},
                   modes=modes)


SERIAL = mode("serial", 1.0, data=0.1, compute=0.4)
SLOW_THREADS = mode("threaded", 1.6, workers=2, data=0.2, compute=1.4)


def test_phase_means_and_largest_phase() -> None:
    means = phase_means(SLOW_THREADS)
    assert means is not None and means["compute"] == pytest.approx(1.4)
    name, share = largest_phase(SLOW_THREADS)  # type: ignore[misc]
    assert name == "compute" and share == pytest.approx(1.4 / 1.6)
    assert phase_means(replace(SERIAL, rounds=())) is None


def test_a_slower_mode_gets_the_phase_that_grew_most() -> None:
    found = [f for f in compute_findings(results(SERIAL, SLOW_THREADS)) if f.code == "phase-decides"]
    assert len(found) == 1
    facts = found[0].facts
    assert facts["phase"] == {"variant": "compute"} and facts["mode"] == "threaded"
    assert facts["share_pct"] == pytest.approx(100 * 1.4 / 1.6)
    en, _ = finding_text(found[0], "en")
    zh, _ = finding_text(found[0], "zh")
    assert "0.62x serial" in en and "compute (forward, backward, step)" in en
    assert "计算" in zh


def test_a_data_bound_mode_is_named_so() -> None:
    data_bound = mode("threaded", 1.6, workers=2, data=1.2, compute=0.45)
    (f,) = [f for f in compute_findings(results(SERIAL, data_bound)) if f.code == "phase-decides"]
    assert f.facts["phase"] == {"variant": "data"}
    faster = mode("threaded", 0.6, workers=2, data=0.2, compute=0.8)
    assert not [f for f in compute_findings(results(SERIAL, faster)) if f.code == "phase-decides"]


def test_the_summary_table_gets_a_largest_phase_column_only_with_phases() -> None:
    table = format_summary_table(results(SERIAL, SLOW_THREADS))
    assert "largest phase" in table and "compute 88%" in table
    assert "最大阶段" in format_summary_table(results(SERIAL, SLOW_THREADS), lang="zh")
    bare = replace(SERIAL, rounds=tuple(replace(r, clients=()) for r in SERIAL.rounds))
    assert "largest phase" not in format_summary_table(results(bare))


def test_the_phase_plot_is_drawn_or_skipped_with_a_reason(tmp_path: Path) -> None:
    (plot,) = write_plots(results(SERIAL, SLOW_THREADS), tmp_path, "r", kinds=("phases",))
    assert plot.path is not None and plot.path.stat().st_size > 1000
    bare = replace(SERIAL, rounds=())
    (skipped,) = write_plots(results(bare), tmp_path, "s", kinds=("phases",))
    assert skipped.path is None and "phases" in (skipped.reason or "")


# --- counterfactuals --------------------------------------------------------------------------


@dataclass
class FakeDevice:
    id: str = "cpu:0"
    cores: tuple[int, ...] = (0, 1)
    is_cuda: bool = False


@dataclass
class FakePrepared:
    config: RunConfig
    devices: tuple[FakeDevice, ...] = (FakeDevice(),)
    plan: Any = None
    seen: list[RunConfig] = field(default_factory=list)


def _parse(*argv: str) -> RunConfig:
    import argparse

    p = argparse.ArgumentParser()
    add_run_arguments(p)
    return config_from_args(p.parse_args(list(argv)))


def test_suspects_only_when_threads_lose_on_a_slot_of_several_cores() -> None:
    prep = FakePrepared(_parse("--workers", "2"))
    assert suspects(results(SERIAL, SLOW_THREADS), prep) == [("torch_threads", 1)]  # type: ignore[arg-type]
    assert suspects(results(SERIAL, mode("threaded", 0.9)), prep) == []  # type: ignore[arg-type]
    one_core = replace(prep, devices=(FakeDevice(cores=(0,)),))
    assert suspects(results(SERIAL, SLOW_THREADS), one_core) == []  # type: ignore[arg-type]
    already = FakePrepared(_parse("--workers", "2", "--torch-threads", "1"))
    assert suspects(results(SERIAL, SLOW_THREADS), already) == []  # type: ignore[arg-type]
    loader = FakePrepared(_parse("--preset", "flower-like"))
    assert suspects(results(SERIAL, SLOW_THREADS), loader) == [  # type: ignore[arg-type]
        ("torch_threads", 1), ("loader_workers", 0)]


def test_counterfactual_rows_are_renamed_timed_against_serial_and_explained() -> None:
    @dataclass
    class Plan:
        config: Any = None

    prep = FakePrepared(_parse("--workers", "2"), plan=Plan())

    def rerun(config: RunConfig, p: Any, rename: Any) -> Results:
        prep.seen.append(config)
        assert rename("threaded") == "threaded@torch-threads=1"
        return results(mode("serial", 1.25), mode("threaded", 0.7, workers=2))

    out = with_counterfactuals(results(SERIAL, SLOW_THREADS), prep, rerun)  # type: ignore[arg-type]
    (tried,) = prep.seen
    assert tried.train.pipeline.torch_threads == 1 and tried.modes == ("serial", "threaded")
    names = [m.name for m in out.modes]
    assert names == ["serial", "threaded", "serial@torch-threads=1", "threaded@torch-threads=1"]
    cf = out.mode(row_name("threaded", "torch_threads", 1))
    assert cf is not None and cf.speedup_vs_serial == pytest.approx(1.0 / 0.7)
    assert out.mode("serial@torch-threads=1").same_result is None  # type: ignore[union-attr]
    (f,) = [f for f in compute_findings(out) if f.code == "setting-moves-threads"]
    assert f.level == "warning" and f.facts["variant"] == "torch_threads"
    en, hint = finding_text(f, "en")
    assert "0.62x serial with 2 torch threads" in en and "--torch-threads 1 it is 1.43x" in en
    assert "serial with the same setting: 0.80x" in en and "moves the ratio" in en
    assert "torch.set_num_threads" in hint
    assert "本次运行中" in finding_text(f, "zh")[0]
    assert not [f for f in compute_findings(out) if f.code == "phase-decides"
                and "@" in f.facts["mode"]]


def test_a_change_within_round_noise_does_not_explain_the_ratio() -> None:
    @dataclass
    class Plan:
        config: Any = None

    prep = FakePrepared(_parse("--workers", "2"), plan=Plan())
    base = results(SERIAL, SLOW_THREADS)
    before = base.mode("threaded").median_round_s  # type: ignore[union-attr]

    def rerun(config: RunConfig, p: Any, rename: Any) -> Results:  # threaded 6% faster
        return results(mode("serial", 1.25), mode("threaded", before / 1.06, workers=2))

    out = with_counterfactuals(base, prep, rerun)  # type: ignore[arg-type]
    (f,) = [f for f in compute_findings(out) if f.code == "setting-moves-threads"]
    en, _ = finding_text(f, "en")
    assert "does not explain the ratio" in en and f.level == "info"


def test_no_counterfactual_when_threads_do_not_lose() -> None:
    prep = FakePrepared(_parse("--workers", "2"))
    fast = results(SERIAL, mode("threaded", 0.8))
    assert with_counterfactuals(fast, prep, lambda *a: pytest.fail("ran")) is fast  # type: ignore[arg-type]


# --- the flower-like client in the process and the in-process modes --------------------------


@pytest.mark.slow
def test_flower_like_runs_in_threads_and_processes_with_serials_result_and_whole_phases() -> None:
    # multi-gpu's workers are multiprocess's, placed elsewhere: one of the two suffices; on
    # one slot, one worker with its loader's worker.
    config = _parse("--preset", "flower-like", "--loader-workers", "1", "--clients", "4",
                    "--samples-per-client", "32", "--batch-size", "16", "--devices", "cpu:1",
                    "--modes", "serial,threaded,multi-gpu",
                    "--warmup", "0", "--rounds", "1", "--sample-interval", "0")
    out = compare(config)
    for m in out.modes:
        assert m.ok, m.error
        if m.name != "serial":
            assert m.same_result is True, m.name
        for r in m.rounds:
            for c in r.clients:
                assert set(PHASES) <= set(c.phases)
                assert sum(c.phases.values()) == pytest.approx(c.end_s - c.start_s, rel=0.05)
    assert [m.name for m in out.modes] == list(config.modes)
