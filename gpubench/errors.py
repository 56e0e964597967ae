"""Errors that the CLI turns into one line on stderr and exit status 2."""

from __future__ import annotations

from gpubench.config import ConfigError
from gpubench.results import ResultsFileError


class UsageError(ValueError):
    """Bad input that is not part of a run configuration (paths, file contents, flags)."""


USER_ERRORS: tuple[type[BaseException], ...] = (UsageError, ConfigError, ResultsFileError)
