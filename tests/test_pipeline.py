"""The client's pipeline options: parsing, the loaders and transforms, and that every option
still computes serial's result in the in-process modes."""

from __future__ import annotations

import argparse
import multiprocessing.forkserver
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from gpubench.cases import load_case
from gpubench.cases.seeds import derive_seed
from gpubench.cli import main
from gpubench.commands.arguments import add_run_arguments, config_from_args
from gpubench.config import ConfigError, PipelineConfig, RunConfig, SampleSizes, TrainConfig
from gpubench.run.harness import compare
from gpubench.train.fl import (
    ClientError,
    ClientTrainer,
    flatten_state,
    local_train,
    make_optimizer,
    state_tensors,
)
from gpubench.train.pipeline import (
    ClientSource,
    augment_draws,
    cifar_pick,
    crop_flip_batch,
    crop_flip_one,
    load_cifar,
    loader_hint,
    shuffle_order,
)
from gpubench.train.updates import FINGERPRINT_SIZE


@pytest.fixture(autouse=True)
def stop_forkserver():
    """A loader's forkserver lives as long as this process: stop it with the test."""
    yield
    multiprocessing.forkserver._forkserver._stop()


def parse(*argv: str) -> RunConfig:
    p = argparse.ArgumentParser()
    add_run_arguments(p)
    return config_from_args(p.parse_args(list(argv)))


def write_cifar(root: Path, per_batch: int = 20) -> Path:
    """A CIFAR-10 folder in torchvision's python layout, a few images per batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for b in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in np.arange(per_batch) % 10]
        with open(folder / f"data_batch_{b}", "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)
    return root


# --- options ----------------------------------------------------------------------------------


def test_defaults_are_the_idealised_client_and_are_recorded() -> None:
    config = parse()
    assert config.train.pipeline == PipelineConfig() and config.train.pipeline.idealised
    assert config.train.lr == 0.05
    assert config.to_dict()["pipeline"]["loader"] == "tensor"


def test_preset_flower_like_and_options_that_win_over_it() -> None:
    p = parse("--preset", "flower-like").train.pipeline
    assert (p.data, p.loader, p.loader_workers, p.augment, p.client_setup, p.sync_loss) == (
        "host", "dataloader", 2, "crop-flip", "fresh", True)
    assert not p.idealised
    assert parse("--preset", "flower-like", "--loader-workers", "0").train.pipeline.loader_workers == 0
    recorded = parse("--preset", "flower-like").to_dict()["pipeline"]
    assert recorded["preset"] == "flower-like" and recorded["loader_workers"] == 2


def test_adam_gets_its_own_default_learning_rate() -> None:
    assert parse("--optimizer", "adam").train.lr == 0.001
    assert parse("--optimizer", "adamw", "--lr", "0.01").train.lr == 0.01


@pytest.mark.parametrize(("argv", "message"), [
    (["--loader-workers", "2"], "need --loader dataloader"),
    (["--loader", "dataloader", "--persistent-workers"], "needs --loader-workers"),
    (["--loader", "dataloader", "--loader-workers", "-1"], "--loader-workers must be >= 0"),
    (["--pin-memory"], "--pin-memory needs --data host"),
    (["--torch-threads", "0"], "--torch-threads must be >= 1"),
    (["--dataset", "mnist:/x"], "--dataset must be cifar10:PATH"),
    (["--dataset", "cifar10:/no/such/folder"], "no folder cifar-10-batches-py"),
])
def test_bad_pipeline_options_are_config_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(*argv)


def test_bad_pipeline_option_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    code = main(["compare", "--devices", "cpu:1", "--amp", "fp16", "--clients", "2",
                 "--quiet", "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--amp fp16 is not applicable on CPU slots" in lines[0]
    assert not (tmp_path / "r.json").exists()


# --- loaders and transforms -------------------------------------------------------------------


def _cfg(**pipeline: object) -> TrainConfig:
    return TrainConfig(batch_size=16, samples=SampleSizes(40, 40), seed=3,
                       pipeline=PipelineConfig(**pipeline))  # type: ignore[arg-type]


def _epoch(cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor, epoch: int = 1):
    source = ClientSource(cfg, 2, x, y, "cpu")
    try:
        return [(xb.clone(), yb.clone()) for xb, yb in source.epoch(epoch)]
    finally:
        source.close()


def test_crop_flip_of_a_batch_is_the_per_sample_transform() -> None:
    x = torch.randn(6, 3, 8, 8)
    offsets, flips = augment_draws(6, 0, 1, 0)
    batch = crop_flip_batch(x, offsets, flips)
    for i in range(6):
        one = crop_flip_one(x[i], int(offsets[i, 0]), int(offsets[i, 1]), bool(flips[i]))
        assert torch.equal(batch[i], one)
        padded = torch.nn.functional.pad(x[i], [4, 4, 4, 4])
        top, left = int(offsets[i, 0]), int(offsets[i, 1])
        want = padded[:, top : top + 8, left : left + 8]
        assert torch.equal(one, want.flip(-1) if flips[i] else want)
    assert flips.any() and not flips.all()


@pytest.mark.parametrize("loader", [
    {"loader": "dataloader"},
    pytest.param({"loader": "dataloader", "loader_workers": 2}, marks=pytest.mark.slow,
                 id="dataloader-2-workers"),  # starts the loader's worker processes
], ids=lambda loader: "-".join(map(str, loader.values())))
def test_every_loader_and_worker_count_makes_the_same_batches(loader: dict) -> None:
    x, y = torch.randn(40, 3, 8, 8), torch.randint(0, 10, (40,))
    reference = _epoch(_cfg(augment="crop-flip"), x, y)
    got = _epoch(_cfg(augment="crop-flip", **loader), x, y)
    assert len(got) == len(reference) == 3
    for (a, ay), (b, by) in zip(reference, got, strict=True):
        assert torch.equal(a, b) and torch.equal(ay, by)
    order = shuffle_order(40, 3, 2, 1)
    assert torch.equal(torch.cat([b for _, b in reference]), y[order])


def test_default_local_training_is_the_plain_sgd_loop() -> None:
    case = load_case("cnn")
    cfg = TrainConfig(batch_size=16, local_epochs=2, seed=5)
    x, y = case.data(5, 0, 40, cfg.partition)
    torch.manual_seed(0)
    model = case.build_model()
    ref = case.build_model()
    ref.load_state_dict(model.state_dict())
    local_train(model, x, y, cfg, 0, case.loss_fn())
    opt = torch.optim.SGD(ref.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    for epoch in range(2):
        gen = torch.Generator().manual_seed(derive_seed(5, "shuffle", 0, epoch))
        order = torch.randperm(40, generator=gen)
        for s in range(0, 40, 16):
            idx = order[s : s + 16]
            opt.zero_grad(set_to_none=True)
            case.loss_fn()(ref(x[idx]), y[idx]).backward()
            opt.step()
    for a, b in zip(model.state_dict().values(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def _update(pipeline: PipelineConfig, case: str = "cnn") -> torch.Tensor:
    c = load_case(case)
    cfg = TrainConfig(batch_size=16, seed=1, pipeline=pipeline,
                      lr=0.05 if pipeline.optimizer == "sgd" else 0.001)
    data = {0: c.data(1, 0, 32, cfg.partition)}
    trainer = ClientTrainer(c, cfg, "cpu", "cpu:0", 0, data)
    torch.manual_seed(0)
    global_state = flatten_state(state_tensors(c.build_model()))
    fps = torch.full((1, FINGERPRINT_SIZE), float("nan"), dtype=torch.float64)
    for _ in range(2):  # a second round: reuse and fresh must not drift apart
        trainer.sink.begin(global_state)
        timing = trainer.run(0, fps)
    trainer.close()
    assert sum(timing.phases.values()) == pytest.approx(timing.end_s - timing.start_s, rel=0.05)
    return trainer.sink.finish().clone()


def test_fresh_setup_host_data_and_loss_sync_compute_the_default_update() -> None:
    base = _update(PipelineConfig())
    for p in (PipelineConfig(client_setup="fresh"), PipelineConfig(data="host", sync_loss=True),
              PipelineConfig(loader="dataloader", client_setup="fresh")):
        assert torch.allclose(_update(p), base, rtol=0, atol=1e-6), p


def test_optimizers_and_bf16_autocast_train_differently_but_finitely() -> None:
    base = _update(PipelineConfig())
    for p in (PipelineConfig(optimizer="adam"), PipelineConfig(optimizer="adamw"),
              PipelineConfig(amp="bf16")):
        update = _update(p)
        assert torch.isfinite(update).all() and not torch.allclose(update, base), p
    model = load_case("cnn").build_model()
    assert isinstance(make_optimizer(model, _cfg(optimizer="adamw")), torch.optim.AdamW)


def test_fp16_on_a_cpu_slot_is_refused_by_the_trainer_too() -> None:
    c = load_case("cnn")
    cfg = TrainConfig(pipeline=PipelineConfig(amp="fp16"))
    with pytest.raises(ConfigError, match="not applicable on CPU slots"):
        ClientTrainer(c, cfg, "cpu", "cpu:0", 0, {})


def test_a_dead_loader_worker_fails_the_client_with_the_loaders_reason_and_a_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def dies(*a: object, **k: object) -> None:
        raise RuntimeError("DataLoader worker (pid(s) 4242) exited unexpectedly")

    monkeypatch.setattr("gpubench.train.fl.train_epochs", dies)
    c = load_case("cnn")
    cfg = TrainConfig(batch_size=16)
    trainer = ClientTrainer(c, cfg, "cpu", "cpu:0", 0, {0: c.data(0, 0, 16, cfg.partition)})
    trainer.sink.begin(torch.zeros(trainer.sink.size))
    fps = torch.full((1, FINGERPRINT_SIZE), float("nan"), dtype=torch.float64)
    with pytest.raises(ClientError, match=r"exited unexpectedly \(DataLoader workers forked"):
        trainer.run(0, fps)
    assert loader_hint(ValueError("other")) == ""


# --- CIFAR-10 from a folder ----------------------------------------------------------------


def test_cifar_folder_partitions_follow_the_clients_labels(tmp_path: Path) -> None:
    root = write_cifar(tmp_path)
    images, labels = load_cifar(str(root))
    assert images.shape == (100, 32, 32, 3) and images.dtype == np.uint8
    want = torch.tensor([3, 3, 7, 0, 3] * 4)  # more 3s than the folder has: drawn again
    picked = cifar_pick(labels, want, seed=0, client=1)
    assert (labels[picked] == want.numpy()).all()
    assert len(set(picked[want.numpy() == 7].tolist())) == 4
    assert not (cifar_pick(labels, want, 0, 2) == picked).all()


def test_cifar_through_every_in_process_mode_is_serials_result(tmp_path: Path) -> None:
    root = write_cifar(tmp_path)
    config = parse("--dataset", f"cifar10:{root}", "--loader", "dataloader", "--augment",
                   "crop-flip", "--clients", "3", "--samples-per-client", "24",
                   "--batch-size", "8", "--devices", "cpu:1", "--modes", "serial,threaded",
                   "--warmup", "0", "--rounds", "1", "--sample-interval", "0")
    results = compare(config)
    threaded = results.mode("threaded")
    assert threaded is not None and threaded.ok and threaded.same_result is True, threaded.error
    assert results.config["pipeline"]["dataset"] == f"cifar10:{root}"


@pytest.mark.slow
def test_threads_with_loader_workers_work_and_agree() -> None:
    config = parse("--preset", "flower-like", "--clients", "3", "--samples-per-client", "32",
                   "--batch-size", "16", "--devices", "cpu:1", "--modes", "serial,threaded",
                   "--warmup", "0", "--rounds", "1", "--sample-interval", "0")
    base = replace(config, train=replace(config.train, pipeline=replace(
        config.train.pipeline, loader_workers=1)))
    results = compare(base)
    for mode in results.modes:
        assert mode.ok and mode.same_result is not False, mode.error
    assert results.mode("threaded").same_result is True  # type: ignore[union-attr]


@pytest.mark.slow
def test_a_pools_persistent_loader_workers_end_with_it() -> None:
    # A pool's worker ends without the interpreter's teardown: it must stop its loader's
    # persistent workers first, or they would be orphans (for the 5 s their watchdog takes).
    import psutil

    from tests.conftest import of_this_session

    config = parse("--loader", "dataloader", "--loader-workers", "1", "--persistent-workers",
                   "--clients", "2", "--samples-per-client", "32", "--batch-size", "16",
                   "--devices", "cpu:1", "--modes", "multi-gpu", "--warmup", "0",
                   "--rounds", "1", "--sample-interval", "0")
    results = compare(config)
    (mode,) = results.modes
    assert mode.ok, mode.error
    orphans = []
    for p in psutil.process_iter():
        try:
            if p.ppid() == 1 and p.status() != psutil.STATUS_ZOMBIE and of_this_session(p):
                orphans.append((p.pid, " ".join(p.cmdline())[:200]))
        except psutil.Error:
            continue
    assert not orphans, f"the pool's loader workers outlived it: {orphans}"
