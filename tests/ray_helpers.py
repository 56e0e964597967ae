"""What the ray and flower tests share: finding Ray's processes, and checking none is left."""

from __future__ import annotations

import time
from dataclasses import replace

import psutil

from gpubench.config import RunConfig, SampleSizes, TrainConfig
from gpubench.modes.ray_common import is_ray_process


def ray_processes() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if is_ray_process(p.name(), p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found


def new_ray_processes(before: set[int], wait_s: float = 10.0) -> list[str]:
    """Ray processes that appeared since ``before`` and are still there after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        left = [p for p in ray_processes() if p.pid not in before]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    out = []
    for p in left:
        try:
            out.append(f"{p.pid} {p.name()}")
        except psutil.Error:
            continue
    return out


def named_descendants(prefix: str) -> list[psutil.Process]:
    """Processes under this one whose title starts with ``prefix`` (Ray actors: ``ray::Name``)."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.name().startswith(prefix) or " ".join(p.cmdline()).startswith(prefix):
                found.append(p)
        except psutil.Error:
            continue
    return found


def small(**kw) -> RunConfig:
    """Five mlp clients on two CPU slots, serial and ray, two rounds: the ray tests' run."""
    train = TrainConfig(batch_size=32, samples=SampleSizes(64, 64), seed=3)
    base = RunConfig(
        case="mlp", clients=5, train=train, devices="cpu:2", modes=("serial", "ray"),
        warmup=0, rounds=2, sample_interval_s=None,
    )
    return replace(base, **kw)
