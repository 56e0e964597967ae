"""``multiprocess+mps`` and ``multi-gpu+mps``: the same process modes with CUDA MPS.

Without MPS, processes on one GPU take turns (time-slicing); with it, their kernels can run
on the GPU at once. gpubench starts a private MPS control daemon for the run's GPUs
(:class:`gpubench.modes.mps.MpsDaemon`: its own pipe and log directories, no GPU setting changed),
gives every worker its environment before CUDA initialises, checks that every worker really
attached (a worker that fell back to time-slicing fails the mode), and stops the daemon when
the mode closes. On CPU slots, or where another MPS daemon (another user's) already serves
the GPUs, the mode is not applicable. ``--mps on`` adds these rows next to
the plain ones, so the same mode with and without MPS is measured side by side.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gpubench.modes.base import ModeFailure, NotApplicable
from gpubench.modes.facts import FACTS
from gpubench.modes.multiprocess import MultiGpuMode, MultiprocessMode
from gpubench.modes.processes import ProcessModeBase, check_parent_gpu_shared


class _WithMps(ProcessModeBase):
    """Wraps a process mode's start and close with a private MPS daemon."""

    daemon: Any = None
    expects_mps = True

    def start(self) -> None:
        from gpubench.modes.mps import MpsAttachError, MpsDaemon, MpsNotApplicable, MpsUnavailable

        devices = tuple({s.device.id: s.device for s in self.specs}.values())
        check_parent_gpu_shared(self.name, self.plan, devices)  # before the daemon starts
        try:
            daemon = MpsDaemon(devices)
        except MpsNotApplicable as exc:
            raise NotApplicable(str(exc)) from None
        try:
            daemon.start()
        except MpsNotApplicable as exc:  # another user's daemon serves the GPU
            raise NotApplicable(str(exc)) from None
        except MpsUnavailable as exc:
            raise ModeFailure(str(exc)) from None
        self.daemon = daemon
        self.specs = [
            replace(s, env=tuple(daemon.worker_environment(s.device).items()))
            for s in self.specs
        ]
        super().start()
        try:
            daemon.check_attached(self.pids())
        except MpsAttachError as exc:
            raise ModeFailure(str(exc)) from None

    def close(self) -> None:
        try:
            super().close()
        finally:
            daemon, self.daemon = self.daemon, None
            if daemon is not None:
                daemon.stop()


class MultiprocessMpsMode(_WithMps, MultiprocessMode):
    name = "multiprocess+mps"
    facts = FACTS[name]


class MultiGpuMpsMode(_WithMps, MultiGpuMode):
    name = "multi-gpu+mps"
    facts = FACTS[name]
