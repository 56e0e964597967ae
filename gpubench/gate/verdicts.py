"""What the gate decides: verdicts on modes, and the report of one gate run (data only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gpubench.results import Results
from gpubench.stats import Interval

PASS = "PASS"
FAIL = "FAIL"
INCONCLUSIVE = "INCONCLUSIVE"
SKIP = "SKIP"
VERDICTS = (PASS, FAIL, INCONCLUSIVE, SKIP)
DEFAULT_MAX_DROP = 0.10
# What an INCONCLUSIVE verdict counts as (``--inconclusive``): the user's choice.
INCONCLUSIVE_POLICIES = ("pass", "fail")
DEFAULT_INCONCLUSIVE = "pass"

# What a verdict says about the mode's result vs serial's (the ``result`` column).
RESULT_REFERENCE = "reference"
RESULT_SAME = "same"
RESULT_DIFFERS = "differs"
RESULT_NOT_COMPARED = "not compared"
NOT_REPRODUCIBLE = "not reproducible"


@dataclass(frozen=True)
class Verdict:
    case: str
    mode: str
    verdict: str
    speedup: Interval | None = None  # the current speedup, with its interval
    reference: str = ""  # what it was compared to: "1.89x" (baseline) or ">= 1.50x"
    change: Interval | None = None  # current / baseline speedup (baseline checks only)
    limit: str = ""  # the limit the checked interval was held to
    message: str | None = None  # why it failed, or why it is inconclusive / skipped
    notes: tuple[str, ...] = ()
    result: str = ""  # "same", "differs", "not reproducible: <reason>", "not compared", ...
    paired: bool = False  # the speedup paired the rounds of an interleaved run

    @property
    def not_reproducible(self) -> bool:
        return self.result.startswith(NOT_REPRODUCIBLE)


@dataclass(frozen=True)
class GateReport:
    baseline: str
    baseline_kind: str  # "results", "pytest-benchmark" or "expectations"
    verdicts: tuple[Verdict, ...]
    max_drop: float
    inconclusive: str  # what an INCONCLUSIVE verdict counts as: "pass" or "fail"
    level: float
    notes: tuple[str, ...] = ()

    @property
    def strict(self) -> bool:
        """INCONCLUSIVE verdicts fail the gate (``--inconclusive fail``)."""
        return self.inconclusive == "fail"

    def counts_as_failure(self, v: Verdict) -> bool:
        return v.verdict == FAIL or (self.strict and v.verdict == INCONCLUSIVE)

    @property
    def failures(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if self.counts_as_failure(v))

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def counts(self) -> dict[str, int]:
        return {k: sum(v.verdict == k for v in self.verdicts) for k in VERDICTS}


class Check(Protocol):
    """A parsed check: ``evaluate`` returns the verdict on one run (its message says why)."""

    @property
    def mode(self) -> str: ...

    def evaluate(self, run: Results) -> Verdict: ...
