"""Cases that bring their own training, loaded by file path as a user's would be."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from gpubench.cases import Case, synthetic_data


def model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))


class Pairs(Dataset):
    """Per-sample reads with a small CPU transform, as a real pipeline has."""

    def __init__(self, seed: int, client: int, n: int, partition) -> None:
        self.x, self.y = synthetic_data((12,), 3, seed, client, n, partition)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return (self.x[i] - self.x[i].mean()) / (self.x[i].std() + 1e-6), self.y[i]


def adam_train(net: nn.Module, loader, cfg, device: str) -> int:
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    net.train()
    for _ in range(cfg.local_epochs):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
            sched.step()
    return len(loader.dataset)


def tensor_train(net: nn.Module, data, cfg, device: str) -> int:
    x, y = data
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr)
    for i in range(0, len(y), cfg.batch_size):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[i : i + cfg.batch_size]), y[i : i + cfg.batch_size]).backward()
        opt.step()
    return int(len(y))


def global_rng_train(net: nn.Module, loader, cfg, device: str) -> int:
    # A loader of its own without a generator: shuffling draws from torch's global RNG.
    mine = DataLoader(loader.dataset, batch_size=cfg.batch_size, shuffle=True)
    return adam_train(net, mine, cfg, device)


def double_count_train(net: nn.Module, loader, cfg, device: str) -> int:
    return 2 * adam_train(net, loader, cfg, device)


dataset_case = Case("dataset", model, (12,), 3, make_dataset=Pairs)
adam_case = Case("adam", model, (12,), 3, make_dataset=Pairs, train=adam_train)
tensor_case = Case(
    "tensors", model, (12,), 3,
    make_data=lambda s, c, n, p: synthetic_data((12,), 3, s, c, n, p), train=tensor_train,
)
global_rng_case = Case("global-rng", model, (12,), 3, make_dataset=Pairs, train=global_rng_train)
double_count_case = Case("double", model, (12,), 3, make_dataset=Pairs, train=double_count_train)
not_a_dataset_case = Case("bad", model, (12,), 3, make_dataset=lambda s, c, n, p: 42)
