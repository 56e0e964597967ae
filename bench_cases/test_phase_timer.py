"""The phase timer's own cost against the cnn case's client (it must stay <= 2% of a round).

    pytest bench_cases/test_phase_timer.py --benchmark-json out.json

Counts the timer's ticks in one cnn client (batch 32: the most ticks per unit of work of the
usual sizes), benchmarks a tick (``PhaseClock.tick`` on the CPU: a ``perf_counter`` and a dict
update), times the same client with the timer and with :class:`NullClock` (one that measures
nothing), interleaved, and reports ticks x tick cost / client time in ``extra_info``.
"""

from __future__ import annotations

import time

import torch

from gpubench.cases import load_case
from gpubench.config import SampleSizes, TrainConfig
from gpubench.train.fl import make_optimizer, train_epochs
from gpubench.train.pipeline import ClientSource, NullClock, PhaseClock

LIMIT = 0.02


class CountingClock(PhaseClock):
    """A phase timer that also counts its ticks."""

    __slots__ = ("ticks",)

    def __init__(self) -> None:
        super().__init__(lambda: None)
        self.ticks = 0

    def tick(self, phase: str, synced: bool = False) -> float:
        self.ticks += 1
        return super().tick(phase, synced)


def _client(clock: PhaseClock) -> float:
    case = load_case("cnn")
    cfg = TrainConfig(batch_size=32, samples=SampleSizes(256, 256), seed=1)
    torch.manual_seed(0)
    model = case.build_model()
    x, y = case.data(cfg.seed, 0, 256, cfg.partition)
    source = ClientSource(cfg, 0, x, y, "cpu")
    t0 = time.perf_counter()
    train_epochs(model, make_optimizer(model, cfg), source, cfg, 0, case.loss_fn(), clock, "cpu")
    return time.perf_counter() - t0


def test_the_phase_timer_costs_under_2_percent_of_a_cnn_client(benchmark):
    counting = CountingClock()
    _client(counting)
    ticks = counting.ticks
    clock = PhaseClock(lambda: None)
    per_call = 1000

    def thousand_ticks() -> None:
        for _ in range(per_call):
            clock.tick("compute")

    benchmark(thousand_ticks)
    tick_s = benchmark.stats.stats.median / per_call
    timed, untimed = [], []
    for _ in range(3):  # interleaved, so drift hits both alike
        timed.append(_client(PhaseClock(lambda: None)))
        untimed.append(_client(NullClock()))
    client_s = sorted(untimed)[1]
    share = ticks * tick_s / client_s
    benchmark.extra_info.update({
        "ticks_per_client": ticks, "tick_s": tick_s, "client_s": client_s,
        "timer_share": share, "timed_over_untimed": sorted(timed)[1] / client_s,
    })
    assert ticks > 0
    assert share <= LIMIT, f"the timer takes {share:.2%} of a client (limit {LIMIT:.0%})"
