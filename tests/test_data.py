"""Synthetic per-client data: deterministic, per client, with optional label skew."""

from __future__ import annotations

import math

import torch

from gpubench.cases import client_sizes, load_case, seeds, synthetic_data
from gpubench.config import Partition, SampleSizes


def _entropy(labels: torch.Tensor, classes: int) -> float:
    counts = torch.bincount(labels, minlength=classes).float()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def test_same_seed_and_client_give_the_same_data():
    a = synthetic_data((3, 8, 8), 10, 7, 2, 50, Partition())
    b = synthetic_data((3, 8, 8), 10, 7, 2, 50, Partition())
    c = synthetic_data((3, 8, 8), 10, 7, 3, 50, Partition())
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (50, 3, 8, 8) and a[1].dtype == torch.long


def test_data_does_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    synthetic_data((4,), 3, 0, 0, 10, Partition())
    assert torch.equal(torch.rand(3), expected)


def test_dirichlet_partition_skews_labels():
    iid = [_entropy(synthetic_data((2,), 10, 0, c, 400, Partition())[1], 10) for c in range(5)]
    skew = [
        _entropy(synthetic_data((2,), 10, 0, c, 400, Partition("dirichlet", 0.1))[1], 10)
        for c in range(5)
    ]
    assert min(iid) > 0.9 * math.log(10)
    assert max(skew) < 0.75 * math.log(10)


def test_client_sizes_fixed_or_drawn_from_the_seed():
    assert client_sizes(SampleSizes(64, 64), 0, 3) == [64, 64, 64]
    drawn = client_sizes(SampleSizes(10, 1000), 1, 20)
    assert drawn == client_sizes(SampleSizes(10, 1000), 1, 20)
    assert all(10 <= s <= 1000 for s in drawn) and len(set(drawn)) > 5


def test_builtin_cases_build_and_fit_their_data():
    for name in ("cnn", "mlp"):
        case = load_case(name)
        x, y = case.data(0, 0, 4, Partition())
        logits = case.build_model()(x)
        assert logits.shape == (4, case.num_classes)


# --- seeds and the cases package -------------------------------------------------------------


def test_derived_seeds_are_the_same_numbers_in_every_process_and_release():
    # Golden values: a change here changes every run's data, initial model and shuffles.
    assert seeds.derive_seed(0, "init") == 2020223635098297231
    assert seeds.derive_seed(7, "shuffle", 3, 1) == 7515301806516984973
    assert client_sizes(SampleSizes(10, 1000), 1, 5) == [117, 435, 659, 234, 345]
    assert synthetic_data((2,), 3, 5, 1, 4, Partition())[1].tolist() == [2, 1, 0, 1]


def test_each_use_of_a_seed_has_its_own_stream():
    named = {
        "init": seeds.init_seed(3),
        "shuffle": seeds.shuffle_seed(3, 1, 0),
        "prototypes": seeds.prototype_seed(3),
        "client": seeds.client_data_seed(3, 1),
        "labels": seeds.label_mix_seed(3, 1),
        "size": seeds.size_seed(3, 1),
    }
    assert named["init"] == seeds.derive_seed(3, "init")
    assert named["shuffle"] == seeds.derive_seed(3, "shuffle", 1, 0)
    assert named["size"] == seeds.derive_seed(3, "size", 1)
    assert len(set(named.values())) == len(named)
    assert seeds.shuffle_seed(3, 1, 0) != seeds.shuffle_seed(3, 1, 1) != seeds.shuffle_seed(3, 2, 1)


def test_the_cases_package_keeps_its_public_names():
    import gpubench.cases as cases

    for name in ("Case", "load_case", "synthetic_data", "client_sizes", "derive_seed",
                 "count_parameters", "builtin_cases"):  # fmt: skip
        assert hasattr(cases, name), name
    assert cases.derive_seed is seeds.derive_seed
    assert set(cases.builtin_cases()) >= {"cnn", "mlp", "resnet18"}
    assert cases.count_parameters(cases.load_case("mlp").build_model()) == 109386
