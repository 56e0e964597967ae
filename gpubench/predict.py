"""Predict a round's time and speedup on K devices from one run's measured client times.

Works from a results file alone (no torch), so a prediction can be made on any machine.

The model, term by term (every number comes from the file):

- **client work** ``w_c``: serial's per-client time (``load_s + train_s + write_s``), the
  median over its measured rounds. Serial runs each client alone on one device, so ``w_c``
  is the client's cost with nothing competing.
- **schedule**: clients go to K devices exactly as the run's ``--assign`` policy would put
  them (:func:`gpubench.machine.devices.assign_clients` on the same work estimate the harness uses,
  samples x local epochs), and a device's clients run one after another. A device's load is
  the sum of its clients' times; the round waits for the most loaded device.
- **per-client overhead** ``delta``: a client in a worker process of multi-gpu does not cost
  exactly ``w_c`` (pinned threads, a copy through shared memory, devices that share memory
  bandwidth): the mean over clients of (multi-gpu client time - serial client time), when the
  file has a measured multi-gpu result; 0 otherwise.
- **fixed cost per round** ``F``: what a round costs beyond its clients. With a multi-gpu
  result: its round time minus its most loaded worker's client times (dispatch through the
  pool's pipes, the parent's FedAvg); otherwise serial's round time minus the sum of its
  client times (the parent's FedAvg and loop), a lower bound for a process mode.

``predicted_round_s = max over devices (sum of (w_c + delta)) + F`` and
``predicted_speedup = serial's median round / predicted_round_s``.

When the file has multi-gpu measured on K devices, the prediction is put next to it
(``measured_speedup``, ``relative_error``); note that multi-gpu's own overheads then feed the
prediction, so :attr:`Prediction.serial_only_speedup` (``delta = 0``, ``F`` from serial)
is the figure that uses serial's measurements alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpubench.assign import assign_clients
from gpubench.errors import UsageError
from gpubench.results import ClientTiming, ModeResult, Results, RoundRecord, median


@dataclass(frozen=True)
class DeviceLoad:
    device: int
    clients: tuple[int, ...]
    busy_s: float


@dataclass(frozen=True)
class Prediction:
    devices: int
    assign: str
    serial_round_s: float
    client_s: tuple[float, ...]
    per_client_overhead_s: float
    fixed_s: float
    fixed_from: str  # "multi-gpu" or "serial"
    loads: tuple[DeviceLoad, ...]
    predicted_round_s: float
    predicted_speedup: float
    serial_only_speedup: float
    measured_speedup: float | None = None
    measured_round_s: float | None = None

    @property
    def relative_error(self) -> float | None:
        if self.measured_speedup is None:
            return None
        return (self.predicted_speedup - self.measured_speedup) / self.measured_speedup

    def to_dict(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "assign": self.assign,
            "serial_round_s": self.serial_round_s,
            "client_s": list(self.client_s),
            "per_client_overhead_s": self.per_client_overhead_s,
            "fixed_s": self.fixed_s,
            "fixed_from": self.fixed_from,
            "loads": [
                {"device": d.device, "clients": list(d.clients), "busy_s": d.busy_s}
                for d in self.loads
            ],
            "predicted_round_s": self.predicted_round_s,
            "predicted_speedup": self.predicted_speedup,
            "serial_only_speedup": self.serial_only_speedup,
            "measured_speedup": self.measured_speedup,
            "measured_round_s": self.measured_round_s,
            "relative_error": self.relative_error,
        }


def _measured(mode: ModeResult) -> list[RoundRecord]:
    return [r for r in mode.rounds if not r.warmup and r.clients]


def _total(c: ClientTiming) -> float:
    return c.load_s + c.train_s + c.write_s


def _client_medians(rounds: Sequence[RoundRecord], clients: int) -> list[float]:
    per: list[list[float]] = [[] for _ in range(clients)]
    for r in rounds:
        for c in r.clients:
            if 0 <= c.client < clients:
                per[c.client].append(_total(c))
    missing = [i for i, v in enumerate(per) if not v]
    if missing:
        raise UsageError(f"serial has no timing for client {missing[0]}: cannot predict")
    return [median(v) for v in per]


def schedule(
    client_s: Sequence[float], work: Sequence[float], k: int, policy: str
) -> list[DeviceLoad]:
    """Clients onto ``k`` devices by ``policy`` (decided on ``work``, as the run does); each
    device's load is the sum of its clients' measured times."""
    on = assign_clients(work, k, policy)
    return [
        DeviceLoad(
            d,
            tuple(c for c in range(len(client_s)) if on[c] == d),
            sum(t for c, t in enumerate(client_s) if on[c] == d),
        )
        for d in range(k)
    ]


def _work(results: Results, clients: int) -> list[float]:
    """The harness's work estimate (samples x local epochs), from the file's config."""
    samples = results.config.samples
    epochs = float(results.config.local_epochs or 1)
    if isinstance(samples, (list, tuple)) and len(samples) == clients:
        return [float(s) * epochs for s in samples]
    return [1.0] * clients


def _multigpu_costs(mg: ModeResult, client_s: Sequence[float]) -> tuple[float, float] | None:
    """(per-client overhead, fixed cost per round) seen in a multi-gpu result."""
    rounds = _measured(mg)
    if not mg.ok or not rounds:
        return None
    extra, fixed = [], []
    for r in rounds:
        per_worker: dict[int, float] = {}
        for c in r.clients:
            per_worker[c.worker] = per_worker.get(c.worker, 0.0) + _total(c)
            if 0 <= c.client < len(client_s):
                extra.append(_total(c) - client_s[c.client])
        fixed.append(r.time_s - max(per_worker.values()))
    if not extra:
        return None
    return sum(extra) / len(extra), max(0.0, median(fixed))


def predict(results: Results, devices: int, assign: str | None = None) -> Prediction:
    """Predicted round time and speedup of one process per device on ``devices`` devices."""
    if devices < 1:
        raise UsageError(f"--devices must be >= 1, got {devices}")
    serial = results.mode("serial")
    if serial is None or not serial.ok or not _measured(serial):
        raise UsageError("the results file has no measured serial mode with client timings")
    rounds = _measured(serial)
    clients = max(c.client for r in rounds for c in r.clients) + 1
    clients = max(clients, int(results.config.clients or 0))
    client_s = _client_medians(rounds, clients)
    serial_round = median([r.time_s for r in rounds])
    serial_fixed = max(0.0, median([r.time_s - sum(_total(c) for c in r.clients) for r in rounds]))
    policy = assign or str(results.config.get("assign") or "round-robin")
    work = _work(results, clients)

    mg = results.mode("multi-gpu")
    costs = _multigpu_costs(mg, client_s) if mg is not None else None
    delta, fixed, fixed_from = (0.0, serial_fixed, "serial") if costs is None else (*costs, "multi-gpu")

    loads = schedule([t + delta for t in client_s], work, devices, policy)
    predicted = max(d.busy_s for d in loads) + fixed
    serial_only = max(d.busy_s for d in schedule(client_s, work, devices, policy)) + serial_fixed

    measured_speedup = measured_round = None
    if mg is not None and mg.ok and len(mg.devices) == devices and mg.median_round_s:
        measured_round = mg.median_round_s
        measured_speedup = mg.speedup_vs_serial or serial_round / measured_round
    return Prediction(
        devices=devices,
        assign=policy,
        serial_round_s=serial_round,
        client_s=tuple(client_s),
        per_client_overhead_s=delta,
        fixed_s=fixed,
        fixed_from=fixed_from,
        loads=tuple(loads),
        predicted_round_s=predicted,
        predicted_speedup=serial_round / predicted,
        serial_only_speedup=serial_round / serial_only,
        measured_speedup=measured_speedup,
        measured_round_s=measured_round,
    )


def format_prediction(p: Prediction) -> str:
    lines = [
        f"predicted round on {p.devices} device(s) ({p.assign}): {p.predicted_round_s:.3f} s, "
        f"speedup {p.predicted_speedup:.2f}x over serial ({p.serial_round_s:.3f} s)",
        f"  from serial's client times alone: {p.serial_only_speedup:.2f}x",
        f"  per-client overhead {p.per_client_overhead_s * 1e3:+.1f} ms, fixed cost per round "
        f"{p.fixed_s * 1e3:.1f} ms (from {p.fixed_from})",
    ]
    for d in p.loads:
        lines.append(f"  device {d.device}: {len(d.clients)} client(s), {d.busy_s:.3f} s busy")
    if p.measured_speedup is not None and p.relative_error is not None:
        lines.append(
            f"measured multi-gpu on {p.devices} device(s): {p.measured_speedup:.2f}x "
            f"(prediction off by {p.relative_error:+.1%})"
        )
    return "\n".join(lines)
