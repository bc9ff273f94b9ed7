"""Files the user names on the command line, checked before a command uses them.

A missing input, or an output in a folder that is not there, is a user mistake: it
stops the command with one line (:class:`~lpfm_insitu.errors.MissingFileError`, worded
as ``open()`` would word it) instead of a traceback from deep inside a reader.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MissingFileError


def existing_input(path) -> Path:
    """``path``, which must exist."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError.of(path)
    return path


def writable_output(path) -> Path:
    """``path``, whose folder must exist (the file itself is made or replaced)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise MissingFileError.of(path)
    return path
