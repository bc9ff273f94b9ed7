'''``configure``: in-situ phase classification from a LAMMPS input script.

Input-script interface (LAMMPS built with the PYTHON package)::

    comm_modify  cutoff 12.0      # ghosts must reach the model's receptive field (checked)
    fix          lpfm all property/atom i_lpfm_phase d_lpfm_conf d2_lpfm_op 4 ghost no
    python       lpfm_invoke here """
    from lpfm_insitu.lammps import configure
    lpfm_invoke = configure(model="default", fix="lpfm", every=100,
                            ops=["hcp", "omega", "bcc", "fcc"])
    """
    fix          lpfm_run all python/invoke 100 end_of_step lpfm_invoke
    python       lpfm_setup input 1 SELF format p exists   # labels at step 0 / `run 0` too
    python       lpfm_setup invoke                          # (after the python/invoke line)
    dump         d all custom 100 out.dump id type x y z i_lpfm_phase d_lpfm_conf d2_lpfm_op[*]

Phases are named by common name (fcc, bcc, hcp, omega, diamond, beta-Sn, ...; any case) or
AFLOW label (A_hP2_194_c). ``fix python/invoke`` is not called while LAMMPS sets up a run
(version 29Sep2021 and others), so without the two ``lpfm_setup`` lines the first labels
come at step N; with them a ``fix ave/time`` companion (``lpfm_first``) classifies while
the run is set up, before the first dump and thermo output. The invoke period must equal
``every``: a different one stops the run.

LAMMPS does not substitute ``${var}`` inside quotes; to take the model from a LAMMPS
variable, ``shell putenv LPFM_MODEL=${lpfm_model}`` and ``model="$LPFM_MODEL"``.

``configure`` loads the model (on every rank, when the ``python`` command runs, so a
wrong model or option stops LAMMPS before the run), prints the phase list and the
column mapping, and returns the callback that ``fix python/invoke`` calls; what each
invocation does is described in ``classifier``. The options, their defaults and their
documentation are those of ``settings.InsituSettings``.
'''

from __future__ import annotations

import inspect
import sys
from typing import Callable

from .classifier import InsituClassifier
from .errors import InsituError, agreed_error, describe, install_excepthook, merge_messages
from .settings import OPTIONS, InsituSettings, options_doc


def _agree_at_configure(problem: str | None) -> None:
    """Configure runs on every rank at the same input line: agree on errors over COMM_WORLD."""
    try:
        from mpi4py import MPI
    except ImportError:  # pragma: no cover - serial LAMMPS without mpi4py
        if problem:
            raise agreed_error(problem)
        return
    comm = MPI.COMM_WORLD
    messages = comm.allgather(problem) if comm.Get_size() > 1 else [problem]
    if any(messages):
        raise agreed_error(merge_messages(messages))


def configure(**options) -> Callable:
    # the docstring and signature are made from InsituSettings, below
    unknown = [name for name in options if name not in OPTIONS]
    if unknown:
        raise TypeError(f"configure() got an unexpected keyword argument {unknown[0]!r}")
    install_excepthook()
    classifier, problem = None, None
    try:
        classifier = InsituClassifier(InsituSettings(**options))
    except InsituError as exc:
        problem = str(exc)
    except Exception as exc:  # noqa: BLE001 - reported to the user, on all ranks together
        problem = describe(exc)
    _agree_at_configure(problem)
    if classifier.settings.verbose:
        classifier.announce()
    classifier.publish(sys.modules["__main__"].__dict__)
    return classifier.callback


configure.__doc__ = ("Set up in-situ classification; returns the ``fix python/invoke`` "
                     "callback.\n\n" + options_doc())
configure.__signature__ = inspect.Signature(
    [inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=option.default)
     for option in InsituSettings.__dataclass_fields__.values()],
    return_annotation=Callable)
