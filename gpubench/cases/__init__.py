"""Cases: which model to train and on what data.

``contract`` holds the :class:`Case` type, ``synthetic`` the default per-client data,
``catalogue`` the built-in cases and ``loading`` the lookup of a case by its spec string.
Importing this package does not import torch; the catalogue is loaded on first use.
"""

from __future__ import annotations

from gpubench.cases.contract import Case, count_parameters
from gpubench.cases.loading import builtin_cases, load_case
from gpubench.cases.seeds import derive_seed
from gpubench.cases.synthetic import client_sizes, synthetic_data

__all__ = [
    "Case",
    "builtin_cases",
    "client_sizes",
    "count_parameters",
    "derive_seed",
    "load_case",
    "synthetic_data",
]
