"""The package's error class: a user mistake that one line can explain.

``lpfm`` prints an :class:`LPFMError` as one line (no traceback unless ``--debug``); any
other exception is a bug or an environment problem and keeps its traceback.
"""

from __future__ import annotations

import errno
import os

__all__ = ["LPFMError", "MissingFileError", "PhaseNameError"]


class LPFMError(ValueError):
    """Bad input or a file the package cannot use; the message names the fix."""


class PhaseNameError(LPFMError, KeyError):
    """A phase name that is neither a common name nor an AFLOW label of the model."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


class MissingFileError(FileNotFoundError, LPFMError):
    """A file or folder the user named is not there.

    Still a FileNotFoundError for callers that catch one; :meth:`of` words it as
    ``open()`` would ("[Errno 2] No such file or directory: 'PATH'").
    """

    @classmethod
    def of(cls, path) -> "MissingFileError":
        return cls(errno.ENOENT, os.strerror(errno.ENOENT), os.fspath(path))
