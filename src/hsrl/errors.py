"""Errors a user can act on.

Every error that comes from user input (a file, a flag, a config, a checkpoint) is an
:class:`HsrlError`; the CLI prints its message and exits non-zero without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class HsrlError(Exception):
    """Base class of the errors that are the user's to fix."""


class DataError(HsrlError):
    """A data file is missing or malformed. Names the file, and the line when known."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None):
        self.path = Path(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}" if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {problem}")


class ConfigError(HsrlError):
    """A config file or a flag has an invalid value."""


class CheckpointError(HsrlError):
    """A checkpoint is missing, corrupted, or was made for another dataset or model."""
