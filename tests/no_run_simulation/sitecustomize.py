"""For the flower mode's tests: ``flwr.simulation.run_simulation`` and ``start_simulation``
raise in every process that imports them (as in a Flower that has removed them), patched the
moment ``flwr.simulation`` is imported, so processes that never import it pay nothing."""

import importlib.abc
import sys

PATCHED = ("run_simulation", "start_simulation")


def _removed(*args, **kwargs):
    raise RuntimeError("run_simulation and start_simulation are removed in this Flower")


class _Patch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "flwr.simulation":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        real_exec = loader.exec_module

        def exec_module(module):
            real_exec(module)
            for attr in PATCHED:
                setattr(module, attr, _removed)

        loader.exec_module = exec_module
        return spec


import importlib.util  # noqa: E402

sys.meta_path.insert(0, _Patch())
