"""The ray mode across Ray nodes: each actor's clock is its own, and a two-node cluster on
this machine (Ray binds it to the machine's address) runs the round with serial's result and
leaves no Ray process behind."""

from __future__ import annotations

import time

import numpy as np
import pytest

from gpubench.machine.devices import cpu_slots
from gpubench.modes.base import Plan
from gpubench.modes.pool import WorkerSetup
from gpubench.modes.processes import plan_workers
from gpubench.modes.ray_common import Resources
from gpubench.run.harness import compare
from gpubench.train.updates import FINGERPRINT_SIZE
from tests.ray_helpers import new_ray_processes, ray_processes, small


def test_an_actor_reports_client_times_on_its_own_clock_from_its_round_start(monkeypatch):
    """Another node's perf_counter has another origin: an actor sends times since it began
    the round, never its clock's raw readings (the driver places them on its own clock)."""
    from gpubench.cases import load_case
    from gpubench.modes.ray_mode import RayWorker
    from gpubench.train.fl import initial_global_state

    monkeypatch.setattr("gpubench.machine.isolation.bind_process", lambda device: "cpu")
    config = small()
    plan = Plan(config, cpu_slots(2), (64,) * 5, 10)
    spec = plan_workers(plan, plan.devices, 1)[1]
    setup = WorkerSetup(case=config.case, train=config.train, sizes=plan.sizes)
    worker = RayWorker(setup, spec, Resources(cpus=1, gpus=0))
    state = initial_global_state(load_case(config.case), config.train.seed).numpy()
    t0 = time.perf_counter()
    partial, weight, fps, timings, memory = worker.run_round(state)
    elapsed = time.perf_counter() - t0
    assert [t.client for t in timings] == list(spec.clients)
    for t in timings:
        assert 0.0 <= t.start_s <= t.end_s <= elapsed, (t.start_s, t.end_s, elapsed)
    assert weight == 64 * len(spec.clients)
    assert fps.shape == (len(spec.clients), FINGERPRINT_SIZE) and np.isfinite(fps).all()


@pytest.fixture
def two_node_cluster():
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    before = {p.pid for p in ray_processes()}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()
    left = new_ray_processes(before)
    assert not left, f"Ray processes outlived the cluster: {left}"


@pytest.mark.slow
@pytest.mark.ray
def test_ray_runs_the_round_on_both_nodes_of_a_two_node_cluster(two_node_cluster):
    # Each node offers one CPU and each actor reserves its slot's one core: Ray must place
    # one actor on each node.
    results = compare(small(options={"ray_address": two_node_cluster.address}))
    ray = results.mode("ray")
    assert ray is not None and ray.status == "ok", ray and ray.error
    assert ray.same_result is True
    assert len({w.node for w in ray.worker_memory}) == 2, ray.worker_memory
    assert all(w.node for w in ray.worker_memory)
    for r in ray.rounds:
        assert sorted(c.client for c in r.clients) == list(range(5))
        for c in r.clients:  # on the driver's clock, inside the round it ran in
            assert 0.0 <= c.start_s <= c.end_s <= r.time_s + 1e-3, (c, r.time_s)
