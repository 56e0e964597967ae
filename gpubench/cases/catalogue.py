"""Built-in cases: small CNN (CIFAR-shaped), ResNet-18, MLP (MNIST-shaped); synthetic data."""

from __future__ import annotations

from torch import nn

from gpubench.cases.contract import Case


def small_cnn(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )


def resnet18(num_classes: int = 10) -> nn.Module:
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=num_classes)
    # 32x32 inputs: a 3x3 stem without the first max-pool, as is usual for CIFAR.
    model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()  # type: ignore[assignment]
    return model


def mlp(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )


CATALOGUE: dict[str, Case] = {
    "cnn": Case(
        "cnn", small_cnn, (3, 32, 32), 10, "small CNN, CIFAR-10-shaped 3x32x32 data, 10 classes"
    ),
    "resnet18": Case(
        "resnet18", resnet18, (3, 32, 32), 10, "torchvision ResNet-18, 32x32 input, 10 classes"
    ),
    "mlp": Case("mlp", mlp, (1, 28, 28), 10, "MLP, MNIST-shaped 1x28x28 data, 10 classes"),
}
