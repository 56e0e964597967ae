"""gpubench: how fast is a federated round under each way of using your GPUs, and why."""

__version__ = "0.1.0"
