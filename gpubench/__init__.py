"""gpubench: how fast is a federated round under each way of using your GPUs, and why.

The public API; each name loads what it needs when first used, so ``import gpubench`` costs
nothing and the readers of results never load torch::

    import gpubench

    if __name__ == "__main__":  # process modes spawn workers, which import the main module
        config = gpubench.RunConfig(case="mlp", clients=4, devices="cpu:2", modes=("serial", "multi-gpu"))
        results = gpubench.compare(config)
        results.save("results/mlp.json")
        gpubench.write_report(gpubench.load_results("results/mlp.json"), "reports/mlp.md")
        gpubench.write_trace(results, "results/mlp.trace.json")  # ui.perfetto.dev opens it
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpubench.version import __version__

if TYPE_CHECKING:
    from gpubench.api import (
        check_gate,
        compare,
        load_results,
        run_failed,
        sweep,
        write_report,
        write_trace,
    )
    from gpubench.config import ConfigError, RunConfig, SampleSizes, TrainConfig
    from gpubench.errors import UsageError
    from gpubench.output import WriteError
    from gpubench.results import Disturbance, ModeResult, OtherProcess, Results, ResultsFileError
    from gpubench.sweep_summary import SweepSummary, load_sweep_summary

__all__ = ["ConfigError", "Disturbance", "ModeResult", "OtherProcess", "Results",
           "ResultsFileError", "RunConfig", "SampleSizes", "SweepSummary", "TrainConfig",
           "UsageError", "WriteError", "__version__", "check_gate", "compare", "load_results",
           "load_sweep_summary", "run_failed", "sweep", "write_report",
           "write_trace"]  # fmt: skip

_API = ("check_gate", "compare", "load_results", "run_failed", "sweep", "write_report",
        "write_trace")


def __getattr__(name: str) -> Any:
    """The public names, each imported on first use (PEP 562)."""
    if name in ("ConfigError", "RunConfig", "SampleSizes", "TrainConfig"):
        from gpubench import config

        value = getattr(config, name)
    elif name in ("Disturbance", "ModeResult", "OtherProcess", "Results", "ResultsFileError"):
        from gpubench import results

        value = getattr(results, name)
    elif name in ("SweepSummary", "load_sweep_summary"):
        from gpubench import sweep_summary

        value = getattr(sweep_summary, name)
    elif name == "UsageError":
        from gpubench.errors import UsageError as value
    elif name == "WriteError":
        from gpubench.output import WriteError as value
    elif name in _API:
        from gpubench import api

        value = getattr(api, name)
    else:
        raise AttributeError(f"module 'gpubench' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
