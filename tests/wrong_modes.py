"""Deliberately wrong modes: each does something other than serial's work, and the harness
must catch it. They run real worker processes on CPU slots (multi-gpu's pool)."""

from __future__ import annotations

import torch

from gpubench.modes.multiprocess import MultiGpuMode
from gpubench.modes.pool import ClientLoop
from gpubench.results import ClientTiming
from gpubench.train.fl import flatten_state, load_state, local_train


class _Counting(ClientLoop):
    rounds = 0

    def begin(self, global_state, partial):
        super().begin(global_state, partial)
        self.rounds += 1


class SkipsAfterWarmup(_Counting):
    """Leaves client 1 out from the second round on."""

    def train(self, clients, fingerprints):
        chosen = self.clients if clients is None else clients
        if self.rounds > 1:
            chosen = [c for c in chosen if c != 1]
        return [self.trainer.run(c, fingerprints) for c in chosen]


def _timing(trainer, client: int) -> ClientTiming:
    n = int(trainer.datasets[client][0].shape[0])
    return ClientTiming(client, trainer.device_id, trainer.worker, n, 0.0, 0.0, 0.0, 0.0, 0.0)


class TrainsTwice(_Counting):
    """Client 2 trains twice (the second time from where the first ended); reported once."""

    def train(self, clients, fingerprints):
        out = []
        for c in self.clients if clients is None else clients:
            if c != 2:
                out.append(self.trainer.run(c, fingerprints))
                continue
            t = self.trainer
            x, y = t.datasets[c]
            load_state(t.tensors, t.sink.global_state)
            local_train(t.model, x, y, t.cfg, c, t.loss_fn)
            local_train(t.model, x, y, t.cfg, c, t.loss_fn)
            flatten_state(t.tensors, t.sink.state_view())
            fingerprints[c] = t.sink.take()
            t.sink.fold(float(x.shape[0]))
            out.append(_timing(t, c))
        return out


class StaleRow(_Counting):
    """From the second round on, client 0 hands back its first round's result untrained."""

    saved: tuple[torch.Tensor, torch.Tensor] | None = None

    def train(self, clients, fingerprints):
        out = []
        sink = self.trainer.sink
        for c in self.clients if clients is None else clients:
            if c == 0 and self.saved is not None:
                update, fp = self.saved
                sink.state_view().copy_(update)
                fingerprints[c] = fp
                sink.fold(float(self.trainer.datasets[c][0].shape[0]))
                out.append(_timing(self.trainer, c))
                continue
            out.append(self.trainer.run(c, fingerprints))
            if c == 0:
                self.saved = (sink.state_view().clone(), fingerprints[c].clone())
        return out


class OtherClientsData(_Counting):
    """Client 3 trains on client 4's data (same size)."""

    def __init__(self, setup, spec, torch_device):
        super().__init__(setup, spec, torch_device)
        from gpubench.cases import load_case
        from gpubench.train.fl import build_datasets

        if 3 in self.clients:
            other = build_datasets(load_case(setup.case), setup.train, [4], setup.sizes,
                                   torch_device)
            self.trainer.datasets[3] = other[4]


class NudgedData(_Counting):
    """Client 3 trains on its own data with one sample's features moved by 1%: a worker whose
    data differs only slightly (a correct path would not land there)."""

    def __init__(self, setup, spec, torch_device):
        super().__init__(setup, spec, torch_device)
        if 3 in self.clients:
            x, y = self.trainer.datasets[3]
            x = x.clone()
            x[0] *= 1.01
            self.trainer.datasets[3] = (x, y)


def _mode(body: str, mode_name: str) -> type:
    return type(
        body,
        (MultiGpuMode,),
        {"name": mode_name, "trainer": f"tests.wrong_modes:make_{body}"},
    )


def make_SkipsAfterWarmup(setup, spec, device):  # noqa: N802
    return SkipsAfterWarmup(setup, spec, device)


def make_TrainsTwice(setup, spec, device):  # noqa: N802
    return TrainsTwice(setup, spec, device)


def make_StaleRow(setup, spec, device):  # noqa: N802
    return StaleRow(setup, spec, device)


def make_OtherClientsData(setup, spec, device):  # noqa: N802
    return OtherClientsData(setup, spec, device)


def make_NudgedData(setup, spec, device):  # noqa: N802
    return NudgedData(setup, spec, device)


SkipsMode = _mode("SkipsAfterWarmup", "wrong-skips")
TwiceMode = _mode("TrainsTwice", "wrong-twice")
StaleMode = _mode("StaleRow", "wrong-stale")
OtherDataMode = _mode("OtherClientsData", "wrong-other-data")
NudgedMode = _mode("NudgedData", "wrong-nudged-data")

WRONG = {
    "wrong-skips": "tests.wrong_modes:SkipsMode",
    "wrong-twice": "tests.wrong_modes:TwiceMode",
    "wrong-stale": "tests.wrong_modes:StaleMode",
    "wrong-other-data": "tests.wrong_modes:OtherDataMode",
    "wrong-nudged-data": "tests.wrong_modes:NudgedMode",
}
