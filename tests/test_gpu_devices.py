"""Which GPU a process really has, told without a GPU: UUIDs as torch, Ray and the user
spell them (a MIG instance included), and the device a Ray or Flower actor counts as."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest

from gpubench.machine import cuda
from gpubench.machine.devices import Device, device_of_visible, visible_entry

A = "GPU-2f0c1d3e-0000-1111-2222-333344445555"
B = "GPU-9a8b7c6d-0000-1111-2222-333344445555"
TWO = (Device("cuda:0", "cuda", 0, "NVIDIA GeForce RTX 4090", uuid=A, visible_as=A),
       Device("cuda:1", "cuda", 1, "NVIDIA GeForce RTX 4090", uuid=B, visible_as=B))


@pytest.mark.parametrize(("entry", "expected"), [
    (A, "cuda:0"), (B, "cuda:1"),      # what local_ray_environment hands the raylet
    ("GPU-9a8b", "cuda:1"),            # a unique prefix, as CUDA accepts it
    ("GPU-", None),                    # not unique
    ("1", None), ("", None), (None, None),  # an index cannot name a GPU known by UUID
])
def test_an_actors_visible_gpu_maps_to_the_runs_device(entry, expected):
    found = device_of_visible(entry, TWO)
    assert (found.id if found else None) == expected


def test_an_index_maps_where_the_run_knows_gpus_by_index():
    by_index = (Device("cuda:0", "cuda", 0, "G"), Device("cuda:1", "cuda", 1, "G"))
    assert device_of_visible("1", by_index) is by_index[1]
    assert device_of_visible(1, by_index) is by_index[1]
    given = (Device("cuda:0", "cuda", 0, "G", visible_as="3"),)  # the user's CUDA_VISIBLE_DEVICES=3
    assert device_of_visible("3", given) is given[0] and device_of_visible("0", given) is None
    assert visible_entry({"CUDA_VISIBLE_DEVICES": f" {B},{A}"}) == B
    assert visible_entry({}) is None


def _fake_ray(monkeypatch, gpu_ids):
    ray = types.ModuleType("ray")
    ray.get_gpu_ids = lambda: gpu_ids  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray", ray)


def test_a_ray_actor_names_the_gpu_ray_gave_it_not_the_planned_one(monkeypatch):
    from gpubench.modes.ray_mode import RayWorker

    # Fractional num_gpus: planned on cuda:0, Ray put it on the second card (by UUID).
    _fake_ray(monkeypatch, [B])
    assert RayWorker._assigned_gpu(TWO[0], TWO) == "cuda:1"
    _fake_ray(monkeypatch, [])  # no ids from Ray: its CUDA_VISIBLE_DEVICES says
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", B)
    assert RayWorker._assigned_gpu(TWO[0], TWO) == "cuda:1"
    _fake_ray(monkeypatch, ["GPU-ffff-another-node"])  # a GPU of another node: the plan's
    assert RayWorker._assigned_gpu(TWO[0], TWO) == "cuda:0"


def test_a_flower_actor_counts_as_the_gpu_it_was_handed(monkeypatch):
    from gpubench.modes import flower_engine

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", B)
    assert flower_engine.actor_device_position(TWO) == 1
    link = SimpleNamespace(setup=SimpleNamespace(devices=TWO), workers={})
    # the first actor to report is on the second card: it counts as cuda:1, not k mod n = 0
    assert flower_engine._ServerLink._device(link, 4242, 1) == "cuda:1"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert flower_engine.actor_device_position(TWO) == -1
    slots = (Device("cpu:0", "cpu", 0, "s", cores=(0,)), Device("cpu:1", "cpu", 1, "s", cores=(1,)))
    link = SimpleNamespace(setup=SimpleNamespace(devices=slots), workers={})
    assert [flower_engine._ServerLink._device(link, pid, -1) for pid in (7, 8, 7)] == \
        ["cpu:0", "cpu:1", "cpu:0"]


def _fake_torch_gpus(monkeypatch, *gpus):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(gpus))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: gpus[i])


def _props(name, uuid):
    return SimpleNamespace(name=name, uuid=uuid, total_memory=24 << 30, pci_domain_id=0,
                           pci_bus_id=1, pci_device_id=0)


def test_a_mig_instance_is_not_called_a_gpu(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _fake_torch_gpus(monkeypatch, _props("NVIDIA A100-SXM4-40GB MIG 1g.5gb", "1f2e-mig"),
                     _props("NVIDIA GeForce RTX 4090", "2f0c-gpu"))
    mig, gpu = cuda.visible_gpus()
    assert mig.uuid == "MIG-1f2e-mig" and mig.visible_as == "MIG-1f2e-mig"
    assert gpu.uuid == "GPU-2f0c-gpu"
    # the user named the instance by its MIG UUID; torch's name need not say MIG
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-1f2e-mig")
    _fake_torch_gpus(monkeypatch, _props("NVIDIA A100-SXM4-40GB", "1f2e-mig"))
    assert cuda.visible_gpus()[0].uuid == "MIG-1f2e-mig"
    assert cuda.uuid_name("GPU-abc", "x") == "GPU-abc"
