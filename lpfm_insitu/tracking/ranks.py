"""The MPI helpers of the tracking modules: rank, bit-identical sums, rank-0 work, gathers.

``comm`` is an mpi4py communicator or ``None`` for serial runs. Rules every tracking
module follows with them:

* every rank calls every collective in the same order; bad *local* input (wrong shape,
  label out of range) is not raised before the collective, because that would leave the
  other ranks waiting in it. Instead the problem travels inside the reduced vector and
  every rank raises together (``raise_if_any``);
* a reduced result is computed on rank 0 and broadcast (``global_sum``), so all ranks
  hold bit-identical statistics. MPI does not promise bit-identical Allreduce results on
  every rank, and a trigger rule comparing a mean confidence with a threshold must take
  the same decision everywhere, otherwise ranks would disagree about entering the
  collective checkpoint write and hang;
* file I/O runs on rank 0 only (``root_call``), which tells every rank whether it worked.
"""

from __future__ import annotations

import pickle
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["rank", "global_sum", "root_call", "raise_if_any", "gather_rows"]


def rank(comm) -> int:
    """This process's rank in ``comm`` (0 without MPI)."""
    return 0 if comm is None else comm.Get_rank()


def global_sum(comm, vec: np.ndarray) -> np.ndarray:
    """Sum ``vec`` over ranks; identical bits on every rank (see module doc)."""
    vec = np.ascontiguousarray(vec, dtype=np.float64)
    if comm is None or comm.Get_size() == 1:
        return vec.copy()
    from mpi4py import MPI

    out = np.zeros_like(vec)
    comm.Reduce(vec, out, op=MPI.SUM, root=0)
    comm.Bcast(out, root=0)
    return out


def root_call(comm, fn: Callable[[], Any], what: str) -> Any:
    """Run ``fn`` on rank 0 only, then tell every rank whether it worked.

    The result of ``fn`` (must be picklable) is broadcast to all ranks.  If
    ``fn`` raised on rank 0, the same exception is raised on every rank, so
    no rank is left waiting in a later collective after a rank-0 I/O error.
    """
    result, err = None, None
    if rank(comm) == 0:
        try:
            result = fn()
        except Exception as exc:  # re-raised below, on every rank
            err = exc
    if comm is None or comm.Get_size() == 1:
        if err is not None:
            raise err
        return result
    payload = None
    if rank(comm) == 0:
        if err is not None:
            try:
                pickle.dumps(err)
                payload = ("error", err)
            except Exception:
                payload = ("error", RuntimeError(f"{what} failed on rank 0: {err!r}"))
        else:
            payload = ("ok", result)
    status, value = comm.bcast(payload, root=0)
    if status == "error":
        if err is not None:
            raise err
        raise value
    return value


def raise_if_any(comm, local_error: str | None, what: str) -> None:
    """Collective: raise ValueError on all ranks if any rank found a problem."""
    if comm is None or comm.Get_size() == 1:
        if local_error:
            raise ValueError(local_error)
        return
    errors = comm.allgather(local_error)
    bad = [(r, e) for r, e in enumerate(errors) if e]
    if bad:
        msg = "; ".join(f"rank {r}: {e}" for r, e in bad)
        raise ValueError(f"{what}: invalid input on {len(bad)} rank(s): {msg}")


def gather_rows(comm, arr: np.ndarray, counts: Sequence[int]):
    """Concatenate per-rank arrays (rows) on rank 0; None elsewhere.

    ``counts`` is every rank's number of rows (ranks may hold none).
    """
    if comm is None or comm.Get_size() == 1:
        return arr
    from mpi4py.util.dtlib import from_numpy_dtype

    per_row = int(np.prod(arr.shape[1:], dtype=np.int64))
    send = np.ascontiguousarray(arr)
    if comm.Get_rank() != 0:
        comm.Gatherv(send, None, root=0)
        return None
    recv = np.empty((int(sum(counts)),) + arr.shape[1:], dtype=arr.dtype)
    elem_counts = [int(c) * per_row for c in counts]
    displs = np.concatenate([[0], np.cumsum(elem_counts)[:-1]]).astype(int).tolist()
    comm.Gatherv(send, [recv, elem_counts, displs, from_numpy_dtype(arr.dtype)], root=0)
    return recv
