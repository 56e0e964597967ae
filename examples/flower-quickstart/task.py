"""flower-quickstart: a Flower / PyTorch app (CIFAR-10-shaped synthetic data)."""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms import Compose, Normalize, ToTensor


class Net(nn.Module):
    """Model (simple CNN adapted from 'PyTorch: A 60 Minute Blitz')"""

    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class SyntheticCIFAR10(Dataset):
    """Stands in for the CIFAR-10 download: 32x32 RGB PIL images of 10 classes, each made
    when it is read (a class pattern plus noise), labels fixed by the seed."""

    def __init__(self, size, seed=42, transform=None):
        rng = np.random.default_rng(seed)
        self.patterns = rng.integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)
        self.labels = rng.integers(0, 10, size=size)
        self.seed = seed
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        label = int(self.labels[index])
        noise = np.random.default_rng((self.seed, index)).integers(0, 96, (32, 32, 3))
        pixels = (self.patterns[label] // 2 + noise).clip(0, 255).astype(np.uint8)
        img = Image.fromarray(pixels)
        if self.transform is not None:
            img = self.transform(img)
        return {"img": img, "label": label}


pytorch_transforms = Compose([ToTensor(), Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])


def load_data(partition_id: int, num_partitions: int, batch_size: int, dataset_size: int):
    """Load partition of the (synthetic) CIFAR-10 training set."""
    dataset = SyntheticCIFAR10(dataset_size, transform=pytorch_transforms)
    # IID partitions, then 80% train, 20% test on each node
    order = np.random.default_rng(42).permutation(len(dataset))
    partition = np.array_split(order, num_partitions)[partition_id]
    split = int(0.8 * len(partition))
    trainloader = DataLoader(
        Subset(dataset, partition[:split].tolist()), batch_size=batch_size, shuffle=True
    )
    testloader = DataLoader(Subset(dataset, partition[split:].tolist()), batch_size=batch_size)
    return trainloader, testloader


def train(net, trainloader, epochs, lr, device):
    """Train the model on the training set."""
    net.to(device)  # move model to GPU if available
    criterion = torch.nn.CrossEntropyLoss().to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    running_loss = 0.0
    for _ in range(epochs):
        for batch in trainloader:
            images = batch["img"].to(device)
            labels = batch["label"].to(device)
            optimizer.zero_grad()
            loss = criterion(net(images), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
    avg_trainloss = running_loss / (epochs * len(trainloader))
    return avg_trainloss


def test(net, testloader, device):
    """Validate the model on the test set."""
    net.to(device)
    criterion = torch.nn.CrossEntropyLoss()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for batch in testloader:
            images = batch["img"].to(device)
            labels = batch["label"].to(device)
            outputs = net(images)
            loss += criterion(outputs, labels).item()
            correct += (torch.max(outputs.data, 1)[1] == labels).sum().item()
    accuracy = correct / len(testloader.dataset)
    loss = loss / len(testloader)
    return loss, accuracy
