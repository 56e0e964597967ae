"""A Flower app in the older quickstart style: a NumPyClient from a client_fn."""

from collections import OrderedDict

import torch
import torch.nn as nn
from flwr.client import ClientApp, NumPyClient
from flwr.common import Context
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 32)
        self.fc2 = nn.Linear(32, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def load_data(partition_id, num_partitions):
    g = torch.Generator().manual_seed(1000 + partition_id)
    n = 40 + 8 * partition_id
    x = torch.randn(n, 20, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
    # Its own generator: shuffling does not depend on the global RNG.
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True,
                      generator=torch.Generator().manual_seed(partition_id))


def get_weights(net):
    return [val.cpu().numpy() for _, val in net.state_dict().items()]


def set_weights(net, parameters):
    params_dict = zip(net.state_dict().keys(), parameters, strict=True)
    state_dict = OrderedDict({k: torch.tensor(v) for k, v in params_dict})
    net.load_state_dict(state_dict, strict=True)


class FlowerClient(NumPyClient):
    def __init__(self, net, trainloader, local_epochs):
        self.net = net
        self.trainloader = trainloader
        self.local_epochs = local_epochs
        self.device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
        self.net.to(self.device)

    def get_parameters(self, config):
        return get_weights(self.net)

    def fit(self, parameters, config):
        set_weights(self.net, parameters)
        opt = torch.optim.SGD(self.net.parameters(), lr=float(config.get("lr", 0.05)))
        self.net.train()
        for _ in range(self.local_epochs):
            for x, y in self.trainloader:
                x, y = x.to(self.device), y.to(self.device)
                opt.zero_grad()
                nn.functional.cross_entropy(self.net(x), y).backward()
                opt.step()
        return get_weights(self.net), len(self.trainloader.dataset), {}


def numpy_client_fn(context: Context):
    trainloader = load_data(context.node_config["partition-id"], context.node_config["num-partitions"])
    return FlowerClient(Net(), trainloader, context.run_config.get("local-epochs", 1))


def client_fn(context: Context):
    return numpy_client_fn(context).to_client()


app = ClientApp(client_fn=client_fn)
