"""A ClientApp in the style of Flower's "get started" tutorial, on data it makes itself."""

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn
from torch.utils.data import DataLoader, Dataset


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Linear(64, 5)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


class Shapes(Dataset):
    def __init__(self, partition_id, n):
        self.partition_id = partition_id
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.partition_id * 100_000 + i)
        label = int(torch.randint(0, 5, (1,), generator=g))
        img = torch.randn(1, 16, 16, generator=g) * 0.5
        img[:, label * 3 : label * 3 + 3, :] += 1.0
        if torch.rand(1, generator=g) < 0.5:
            img = torch.flip(img, dims=[2])
        return img, label


def get_loaders(partition_id, num_partitions, batch_size):
    trainset = Shapes(partition_id, 30 + 7 * partition_id)
    return DataLoader(trainset, batch_size=batch_size, shuffle=True)


app = ClientApp()


@app.train()
def train(msg: Message, context: Context):
    model = SmallNet()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    model.to(device)
    trainloader = get_loaders(
        context.node_config["partition-id"], context.node_config["num-partitions"],
        context.run_config["batch-size"],
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=context.run_config["learning-rate"])
    model.train()
    total = 0.0
    for _ in range(context.run_config["local-epochs"]):
        for images, labels in trainloader:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            total += loss.item()
    reply = RecordDict({
        "arrays": ArrayRecord(model.state_dict()),
        "metrics": MetricRecord({"train_loss": total, "num-examples": len(trainloader.dataset)}),
    })
    return Message(content=reply, reply_to=msg)
