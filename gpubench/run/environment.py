"""The environment every run measures in, set before torch loads (this module loads none).

:func:`measuring_environment` is called first by every measuring entry (the command line,
:func:`gpubench.run.harness.measure`, the API, the FAQ's plan), so that a run measures, and
records in ``results.environment``, the same conditions whichever way it was started.
"""

from __future__ import annotations

from gpubench.machine.isolation import bound_openmp_wait
from gpubench.modes.mps import private_plain_pipe


def measuring_environment() -> None:
    """OpenMP's bounded wait (:func:`gpubench.machine.isolation.bound_openmp_wait`), in this
    process if torch has not loaded OpenMP yet, and in every worker it starts; and a private,
    empty MPS pipe directory unless the user set one (:func:`gpubench.modes.mps.private_plain_pipe`),
    so that no mode but the ``+mps`` ones is an MPS client. Setting it twice changes nothing."""
    bound_openmp_wait()
    private_plain_pipe()
