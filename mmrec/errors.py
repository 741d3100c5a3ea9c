"""The one family of user-facing errors.

Anything a user can cause (a bad path, a bad spec, corrupt input) raises a subclass of
:class:`MMRecError` early, with the offending value in its message; the CLI prints that one line
and exits with code 2 for usage errors and 1 for data errors.
"""

from __future__ import annotations


class MMRecError(Exception):
    """Base class of every error mmrec raises on purpose."""

    exit_code = 1


class UsageError(MMRecError, ValueError):
    """A wrong argument, name or configuration: the caller must change the call."""

    exit_code = 2


class InputError(MMRecError, ValueError):
    """A sample or file whose content cannot be used (corrupt image, silent audio, empty text).

    ``field`` names the sample field or modality at fault, when known (batch jobs log it).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class MissingWeightsError(UsageError, FileNotFoundError):
    """Pretrained weights that are not on this machine (mmrec never downloads them)."""
