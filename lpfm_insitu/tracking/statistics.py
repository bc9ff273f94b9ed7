"""Global phase statistics from per-rank classifier output.

Every LAMMPS rank classifies only its own atoms; what a person watching a
shock run needs is the *global* picture (how much of the sample is in each
phase, how sure the model is).  This module reduces the per-rank arrays into
that picture with a single reduction of one packed float64 vector, so the
cost per call is one tiny collective regardless of the number of phases.
The MPI rules it follows (bad local input raises on every rank together;
results bit-identical on every rank) are those of :mod:`.ranks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..constants import UNKNOWN_PHASE
from .ranks import global_sum, raise_if_any

__all__ = [
    "PhaseStatistics",
    "reduce_phase_statistics",
    "spatial_profile",
    "profile_edges",
    "as_labels",
]


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


def as_labels(labels, n_phases: int) -> np.ndarray:
    """``labels`` as int64, checked: indices into the phases or UNKNOWN_PHASE (raises ValueError)."""
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
    lab = as_labels(labels, n)
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
    total = global_sum(comm, vec)
    if total[width] > 0:
        raise_if_any(comm, error, "reduce_phase_statistics")
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
        lab = as_labels(labels, n_phases)
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
    total = global_sum(comm, vec)
    if total[width] > 0:
        raise_if_any(comm, error, "spatial_profile")
    counts = np.rint(total[:width]).astype(np.int64).reshape(n_bins, n_phases + 1)
    per_bin = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(
        counts, per_bin, out=np.zeros(counts.shape, dtype=np.float64), where=per_bin > 0
    )
    return (fractions, counts) if return_counts else fractions
