"""The package's error class: a user mistake that one line can explain.

``lpfm`` prints an :class:`LPFMError` as one line (no traceback unless ``--debug``); any
other exception is a bug or an environment problem and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["LPFMError", "PhaseNameError"]


class LPFMError(ValueError):
    """Bad input or a file the package cannot use; the message names the fix."""


class PhaseNameError(LPFMError, KeyError):
    """A phase name that is neither a common name nor an AFLOW label of the model."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""
