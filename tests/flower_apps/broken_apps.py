"""ClientApps whose client 2 misbehaves; the others train like the quickstart's."""

import threading

import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn


def Net():
    return nn.Linear(6, 2)


def _train(msg, context, problem):
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    g = torch.Generator().manual_seed(context.node_config["partition-id"])
    x, y = torch.randn(24, 6, generator=g), torch.randint(0, 2, (24,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for i in range(0, 24, 8):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 8]), y[i : i + 8]).backward()
        opt.step()
    state = model.state_dict()
    metrics = {"num-examples": 24}
    if context.node_config["partition-id"] == 2:
        if problem == "raises":
            raise RuntimeError("the data server is unreachable")
        if problem == "hangs":
            threading.Event().wait()
        if problem == "shapes":
            state["weight"] = torch.zeros(3, 6)
        if problem == "examples":
            metrics = {"train_loss": 0.5}
    content = RecordDict({"arrays": ArrayRecord(state), "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


def _app(problem):
    app = ClientApp()
    app.train()(lambda msg, context: _train(msg, context, problem))
    return app


raises = _app("raises")
hangs = _app("hangs")
shapes = _app("shapes")
examples = _app("examples")
