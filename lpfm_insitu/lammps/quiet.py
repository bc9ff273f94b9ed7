"""Importing the core on every rank without the notices it prints once per process.

TorchScript warnings and a cuequivariance notice come from the e3nn/mace imports; once
per rank they would bury LAMMPS' own output.
"""

from __future__ import annotations

import contextlib
import io
import warnings


@contextlib.contextmanager
def quietly():
    """Silence warnings and standard output for the imports (and loads) inside."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def core_inference():
    """``lpfm_insitu.model.inference``, imported quietly."""
    with quietly():
        from ..model.mace_import import import_mace_quietly

        import_mace_quietly()  # its accelerator notice goes to stderr, not to stdout
        from ..model import inference
    return inference
