"""Stopping a parallel LAMMPS run cleanly when something goes wrong on some rank.

LAMMPS reports an exception raised in a ``fix python/invoke`` callback with
``error->all`` ("Fix python/invoke end_of_step() method failed"), which is collective:
it is clean only if EVERY rank raises, at the same invocation. A rank that raises
alone leaves the others waiting in their next MPI call forever.

So the adapter never raises alone. Every collective step of an invocation first passes
a *sync point* (``ErrorSync.check``): an all-reduce of an error flag on a private
communicator. A rank that hit a problem takes its message to the next sync point;
there all ranks learn about it, gather the messages and raise the same
``InsituError`` together, which LAMMPS then reports and exits on. If the other ranks
never arrive (they are stuck in some collective of their own, for example inside a
user hook), the failing rank waits ``timeout`` seconds, prints its message and calls
``MPI_Abort``: the run ends with the message visible instead of hanging.

Python prints exceptions raised in the embedded interpreter through ``sys.excepthook``;
``install_excepthook`` makes an agreed ``InsituError`` print once (rank 0) as a short
``ERROR (lpfm_insitu): ...`` block instead of one traceback per rank.
"""

from __future__ import annotations

import os
import sys
import time
import traceback

import numpy as np

DEFAULT_ERROR_TIMEOUT = 120.0  # seconds a failing rank waits for the others before aborting


class InsituError(RuntimeError):
    """A problem that stops the run; the message says what to change.

    ``agreed`` means every rank raises this same error at the same point, so rank 0
    alone prints it.
    """

    def __init__(self, message: str, *, agreed: bool = False):
        super().__init__(message)
        self.agreed = agreed


def agreed_error(message: str) -> InsituError:
    """An error every rank raises alike: a setting is the same on every rank (one input
    script), so rank 0 alone prints it."""
    return InsituError(message, agreed=True)


def world_rank(comm=None) -> int:
    """This process's rank in ``comm`` (default: MPI's world); 0 without MPI."""
    if comm is not None:
        return comm.Get_rank()
    try:
        from mpi4py import MPI

        return MPI.COMM_WORLD.Get_rank()
    except Exception:  # pragma: no cover - mpi4py missing: a serial run
        return 0


def print_error(message: str, rank: int | None = None) -> None:
    prefix = "ERROR (lpfm_insitu)"
    if rank is not None:
        prefix += f" on rank {rank}"
    text = message.rstrip().replace("\n", "\n    ")
    sys.stderr.write(f"{prefix}: {text}\n")
    sys.stderr.flush()
    sys.stdout.flush()


_previous_hook = None


def _excepthook(exc_type, exc, tb):
    if isinstance(exc, InsituError):
        if exc.agreed:
            if world_rank() == 0:
                print_error(str(exc))
        else:
            print_error(str(exc), world_rank())
        return
    (_previous_hook or sys.__excepthook__)(exc_type, exc, tb)


def install_excepthook() -> None:
    global _previous_hook
    if sys.excepthook is not _excepthook:
        _previous_hook = sys.excepthook
        sys.excepthook = _excepthook


def describe(exc: BaseException) -> str:
    """One exception as text: the message, and the traceback for unexpected errors."""
    if isinstance(exc, InsituError):
        return str(exc)
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return f"{type(exc).__name__}: {exc}\n" + "".join(lines[-6:]).rstrip()


class ErrorSync:
    """Error-flag agreement at the sync points of an invocation (see module docstring)."""

    def __init__(self, comm, timeout: float | None = None):
        self.comm = comm
        self.timeout = float(timeout if timeout is not None else os.environ.get(
            "LPFM_INSITU_ERROR_TIMEOUT", DEFAULT_ERROR_TIMEOUT))

    def check(self, problem: str | None = None) -> None:
        """Collective. Raises the same ``InsituError`` on every rank if any rank has a problem."""
        from mpi4py import MPI

        comm = self.comm
        if comm is None or comm.Get_size() == 1:
            if problem:
                raise InsituError(problem, agreed=True)
            return
        flag = np.array([1 if problem else 0], dtype=np.int32)
        result = np.zeros(1, dtype=np.int32)
        request = comm.Iallreduce(flag, result, op=MPI.MAX)
        if problem:
            deadline = time.monotonic() + self.timeout
            while not request.Test():
                if time.monotonic() > deadline:
                    self.abort(problem)
                time.sleep(0.01)
        else:
            request.Wait()
        if result[0]:
            messages = comm.allgather(problem)
            raise InsituError(merge_messages(messages), agreed=True)

    def abort(self, problem: str) -> None:
        rank = self.comm.Get_rank() if self.comm is not None else 0
        print_error(f"{problem}\n(the other ranks did not reach the error check within "
                    f"{self.timeout:g} s, so rank {rank} aborts the run with MPI_Abort)", rank)
        from mpi4py import MPI

        MPI.COMM_WORLD.Abort(1)


def merge_messages(messages) -> str:
    """Identical messages once; different ones with the ranks they came from."""
    by_text: dict[str, list[int]] = {}
    for rank, text in enumerate(messages):
        if text:
            by_text.setdefault(text, []).append(rank)
    if len(by_text) == 1:
        text, ranks = next(iter(by_text.items()))
        if len(ranks) == len(messages):
            return text
        return f"{text}\n(on rank{'s' if len(ranks) > 1 else ''} {_ranks(ranks)})"
    return "\n".join(f"rank {_ranks(r)}: {t}" for t, r in by_text.items())


def _ranks(ranks) -> str:
    return ", ".join(map(str, ranks[:8])) + (", ..." if len(ranks) > 8 else "")
