"""Global phase statistics from per-rank classifier output.

Every LAMMPS rank classifies only its own atoms; what a person watching a
shock run needs is the *global* picture (how much of the sample is in each
phase, how sure the model is).  This module reduces the per-rank arrays into
that picture with a single reduction of one packed float64 vector, so the
cost per call is one tiny collective regardless of the number of phases.

MPI rules followed throughout the tracking modules (``comm`` is an mpi4py
communicator or ``None`` for serial runs):

* every rank calls every collective in the same order; bad *local* input
  (wrong shape, label out of range) is not raised before the collective,
  because that would leave the other ranks waiting in it.  Instead the
  problem travels inside the reduced vector and every rank raises together;
* the reduced result is computed on rank 0 and broadcast, so all ranks hold
  bit-identical statistics.  MPI does not promise bit-identical Allreduce
  results on every rank, and a trigger rule comparing a mean confidence with
  a threshold must take the same decision everywhere, otherwise ranks would
  disagree about entering the collective checkpoint write and hang.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..constants import UNKNOWN_PHASE

__all__ = [
    "PhaseStatistics",
    "reduce_phase_statistics",
    "spatial_profile",
    "as_lammps_variables",
]


# --------------------------------------------------------------------------
# MPI helpers shared by the tracking modules (private to the package).
# --------------------------------------------------------------------------
def _rank(comm) -> int:
    return 0 if comm is None else comm.Get_rank()


def _global_sum(comm, vec: np.ndarray) -> np.ndarray:
    """Sum ``vec`` over ranks; identical bits on every rank (see module doc)."""
    vec = np.ascontiguousarray(vec, dtype=np.float64)
    if comm is None or comm.Get_size() == 1:
        return vec.copy()
    from mpi4py import MPI

    out = np.zeros_like(vec)
    comm.Reduce(vec, out, op=MPI.SUM, root=0)
    comm.Bcast(out, root=0)
    return out


def _root_call(comm, fn: Callable[[], Any], what: str) -> Any:
    """Run ``fn`` on rank 0 only, then tell every rank whether it worked.

    The result of ``fn`` (must be picklable) is broadcast to all ranks.  If
    ``fn`` raised on rank 0, the same exception is raised on every rank, so
    no rank is left waiting in a later collective after a rank-0 I/O error.
    """
    result, err = None, None
    if _rank(comm) == 0:
        try:
            result = fn()
        except Exception as exc:  # re-raised below, on every rank
            err = exc
    if comm is None or comm.Get_size() == 1:
        if err is not None:
            raise err
        return result
    payload = None
    if _rank(comm) == 0:
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


def _raise_if_any(comm, local_error: str | None, what: str) -> None:
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


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PhaseStatistics:
    """Global phase populations at one moment of the run.

    Index ``i < n_phases`` of the per-phase arrays is ``phases[i]``; the
    extra last entry of ``counts`` / ``fractions`` /
    ``mean_confidence_per_phase`` is the *unknown* class (atoms the model
    would not commit to).  Means over empty sets are NaN, never 0, so an
    absent phase cannot be mistaken for a confidently-zero one.
    """

    phases: tuple[str, ...]
    counts: np.ndarray  # int64, (n_phases + 1,), last = unknown
    n_atoms: int
    mean_confidence: float
    mean_op: np.ndarray  # float64, (n_phases,)
    mean_confidence_per_phase: np.ndarray = field(default=None)  # (n_phases + 1,)

    def __post_init__(self):
        object.__setattr__(self, "phases", tuple(str(p) for p in self.phases))
        object.__setattr__(self, "counts", np.asarray(self.counts, dtype=np.int64))
        object.__setattr__(self, "n_atoms", int(self.n_atoms))
        object.__setattr__(self, "mean_confidence", float(self.mean_confidence))
        object.__setattr__(self, "mean_op", np.asarray(self.mean_op, dtype=np.float64))
        mcp = self.mean_confidence_per_phase
        if mcp is None:
            mcp = np.full(len(self.phases) + 1, np.nan)
        object.__setattr__(self, "mean_confidence_per_phase", np.asarray(mcp, dtype=np.float64))
        n = len(self.phases)
        if self.counts.shape != (n + 1,) or self.mean_op.shape != (n,):
            raise ValueError(
                f"PhaseStatistics for {n} phases needs counts of shape ({n + 1},) and "
                f"mean_op of shape ({n},); got {self.counts.shape} and {self.mean_op.shape}"
            )

    @property
    def n_phases(self) -> int:
        return len(self.phases)

    @property
    def fractions(self) -> np.ndarray:
        """Fraction of atoms per class (last = unknown); zeros if no atoms."""
        if self.n_atoms == 0:
            return np.zeros(self.n_phases + 1)
        return self.counts / float(self.n_atoms)

    def fraction(self, phase: str) -> float:
        """Fraction of one phase by name (``"unknown"`` = the unknown class)."""
        return float(self.fractions[_phase_index(self.phases, phase)])


def _phase_index(phases: Sequence[str], phase: str) -> int:
    """Column of ``phase`` in the (n_phases + 1) arrays; "unknown" is last."""
    phases = tuple(phases)
    if phase in phases:
        return phases.index(phase)
    if phase == "unknown":
        return len(phases)
    raise ValueError(f"unknown phase {phase!r}; valid: {list(phases) + ['unknown']}")


def _as_labels(labels, n_phases: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"labels must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = ((arr < 0) & (arr != UNKNOWN_PHASE)) | (arr >= n_phases)
    if np.any(bad):
        raise ValueError(
            f"labels must be in [0, {n_phases}) or {UNKNOWN_PHASE} (unknown); "
            f"found e.g. {arr[bad][:5].tolist()}"
        )
    return arr


def _local_sums(labels, confidence, ops, n: int) -> np.ndarray:
    """Packed local sums: counts(n+1) | confidence sums(n+1) | op sums(n)."""
    lab = _as_labels(labels, n)
    m = lab.size
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    if conf.size != m:
        raise ValueError(f"confidence has {conf.size} entries for {m} labels")
    ops_arr = np.asarray(ops, dtype=np.float64)
    if ops_arr.size == 0 and m == 0:
        ops_arr = ops_arr.reshape(0, n)
    if ops_arr.shape != (m, n):
        raise ValueError(f"ops must have shape ({m}, {n}), got {ops_arr.shape}")
    idx = np.where(lab == UNKNOWN_PHASE, n, lab)
    counts = np.bincount(idx, minlength=n + 1).astype(np.float64)
    conf_sum = np.bincount(idx, weights=conf, minlength=n + 1)
    known = lab >= 0
    op_sum = np.bincount(
        lab[known], weights=ops_arr[np.nonzero(known)[0], lab[known]], minlength=n
    )
    return np.concatenate([counts, conf_sum, op_sum])


def reduce_phase_statistics(labels, confidence, ops, phases, comm=None) -> PhaseStatistics:
    """Global :class:`PhaseStatistics` from this rank's atoms (collective).

    ``labels`` (n_local,) index into ``phases`` or are -1 (unknown);
    ``confidence`` (n_local,); ``ops`` (n_local, n_phases) per-phase logits.
    A rank with zero atoms passes empty arrays and still takes part.
    """
    phases = tuple(str(p) for p in phases)
    n = len(phases)
    width = 3 * n + 2
    vec = np.zeros(width + 1)  # last slot: "this rank's input was bad"
    error = None
    try:
        vec[:width] = _local_sums(labels, confidence, ops, n)
    except (ValueError, TypeError, IndexError) as exc:
        error = str(exc)
        vec[:] = 0.0
        vec[width] = 1.0
    total = _global_sum(comm, vec)
    if total[width] > 0:
        _raise_if_any(comm, error, "reduce_phase_statistics")
    counts = np.rint(total[: n + 1]).astype(np.int64)
    conf_sum = total[n + 1 : 2 * n + 2]
    op_sum = total[2 * n + 2 : width]
    n_atoms = int(counts.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = conf_sum.sum() / n_atoms if n_atoms else np.nan
        conf_per_phase = np.where(counts > 0, conf_sum / np.maximum(counts, 1), np.nan)
        mean_op = np.where(counts[:n] > 0, op_sum / np.maximum(counts[:n], 1), np.nan)
    return PhaseStatistics(
        phases=phases,
        counts=counts,
        n_atoms=n_atoms,
        mean_confidence=mean_conf,
        mean_op=mean_op,
        mean_confidence_per_phase=conf_per_phase,
    )


def profile_edges(lo: float, hi: float, n_bins: int) -> np.ndarray:
    """Bin edges used by :func:`spatial_profile` (n_bins + 1 values)."""
    return np.linspace(float(lo), float(hi), int(n_bins) + 1)


def spatial_profile(
    labels, coordinate, n_phases, lo, hi, n_bins, comm=None, return_counts=False
):
    """Phase fractions in slabs along one axis (collective).

    A shock front is a plane moving along one axis, so slab-resolved phase
    fractions show where the transformation happens.  Atoms outside
    ``[lo, hi)`` (a shock can push atoms past the original box) are counted
    in the end bins rather than dropped, so every atom is counted once.

    Returns ``fractions`` of shape (n_bins, n_phases + 1) (last column =
    unknown; rows of empty bins are zero), or ``(fractions, counts)`` with
    per-bin per-class atom counts if ``return_counts``.
    """
    n_phases, n_bins = int(n_phases), int(n_bins)
    lo, hi = float(lo), float(hi)
    if n_bins < 1 or not hi > lo:
        # Same arguments on every rank, so raising here is collective-safe.
        raise ValueError(f"need n_bins >= 1 and hi > lo; got n_bins={n_bins}, lo={lo}, hi={hi}")
    width = n_bins * (n_phases + 1)
    vec = np.zeros(width + 1)
    error = None
    try:
        lab = _as_labels(labels, n_phases)
        x = np.asarray(coordinate, dtype=np.float64).reshape(-1)
        if x.size != lab.size:
            raise ValueError(f"coordinate has {x.size} entries for {lab.size} labels")
        if not np.all(np.isfinite(x)):
            raise ValueError("coordinate contains non-finite values")
        b = np.floor((x - lo) / (hi - lo) * n_bins).astype(np.int64)
        b = np.clip(b, 0, n_bins - 1)
        col = np.where(lab == UNKNOWN_PHASE, n_phases, lab)
        vec[:width] = np.bincount(b * (n_phases + 1) + col, minlength=width)
    except (ValueError, TypeError) as exc:
        error = str(exc)
        vec[:] = 0.0
        vec[width] = 1.0
    total = _global_sum(comm, vec)
    if total[width] > 0:
        _raise_if_any(comm, error, "spatial_profile")
    counts = np.rint(total[:width]).astype(np.int64).reshape(n_bins, n_phases + 1)
    per_bin = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(
        counts, per_bin, out=np.zeros(counts.shape, dtype=np.float64), where=per_bin > 0
    )
    return (fractions, counts) if return_counts else fractions


_INVALID_VAR_CHARS = re.compile(r"[^A-Za-z0-9_]")


def lammps_variable_name(label: str) -> str:
    """``lpfm_frac_<label>`` with characters LAMMPS rejects replaced by ``_``."""
    return "lpfm_frac_" + _INVALID_VAR_CHARS.sub("_", str(label))


def as_lammps_variables(stats: PhaseStatistics) -> dict[str, float]:
    """Scalars to publish as LAMMPS equal-style variables.

    Gives ``lpfm_frac_<phase>`` per phase, ``lpfm_frac_unknown``,
    ``lpfm_conf_mean`` and ``lpfm_natoms``, so an input script can print
    them with thermo or stop a run with ``fix halt``.  LAMMPS expressions do
    not handle NaN, so the mean confidence of an empty system is given as
    0.0.  Two labels that sanitise to the same name would silently shadow
    each other, so that raises ValueError instead.
    """
    out: dict[str, float] = {}
    fr = stats.fractions
    for i, label in enumerate(list(stats.phases) + ["unknown"]):
        name = lammps_variable_name(label)
        if name in out:
            clash = [p for p in list(stats.phases) + ["unknown"] if lammps_variable_name(p) == name]
            raise ValueError(
                f"phase labels {clash} all map to LAMMPS variable {name!r}; "
                "rename the phases so their sanitised names differ"
            )
        out[name] = float(fr[i])
    conf = stats.mean_confidence
    out["lpfm_conf_mean"] = float(conf) if np.isfinite(conf) else 0.0
    out["lpfm_natoms"] = float(stats.n_atoms)
    return out
