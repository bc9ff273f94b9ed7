"""What runs after each in-situ classification: hooks that receive an ``InsituFrame``.

A hook is any callable ``hook(frame)``. It runs on EVERY rank, after the labels, confidence
and order parameters of the invocation are written into LAMMPS' per-atom columns. Hooks
come from two places, called in this order:

* ``configure(..., on_result=[hook, ...])``: hooks of one classifier;
* ``lpfm_insitu.lammps.hooks.register(hook)``: hooks of every classifier in the process
  (for tools that plug in from a separate ``python`` command of the input script).

``frame.comm`` is the LAMMPS world communicator (mpi4py). A hook may use it for
collectives (global phase fractions, gathered snapshots), under one rule: it raises on
all ranks or on none (the tracking modules follow this rule). If a hook raises on some
ranks only and the others wait inside a collective, the run is aborted after
``error_timeout`` seconds with the hook's message, rather than hanging.

Inside a hook LAMMPS commands cannot be issued (LAMMPS forbids commands during a run);
read-only access through ``frame.lmp`` (``extract_*``) is fine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .errors import world_rank

Hook = Callable[["InsituFrame"], Any]

_REGISTRY: list[Hook] = []


def register(hook: Hook) -> Hook:
    """Call ``hook(frame)`` after every invocation of every classifier; usable as decorator."""
    if not callable(hook):
        raise TypeError(f"a hook must be callable, got {hook!r}")
    if hook not in _REGISTRY:
        _REGISTRY.append(hook)
    return hook


def unregister(hook: Hook) -> None:
    if hook in _REGISTRY:
        _REGISTRY.remove(hook)


def registered() -> tuple[Hook, ...]:
    return tuple(_REGISTRY)


def clear() -> None:
    _REGISTRY.clear()


@dataclass
class InsituFrame:
    """One invocation's answers on one rank, for the atoms this rank owns and classified.

    Per-atom arrays (``ids``, ``types``, ``positions``, ``labels``, ``confidence``,
    ``ops``, ``displacement``) are aligned: row k is the owned atom in LAMMPS' local row
    ``local_index[k]``. Atoms of types excluded by ``configure(types=...)`` are not in
    them. ``ops`` holds the logits of ALL model phases (``phases``), whatever subset is
    written to the ``d2_..._op`` column; ``op_indices`` says which.
    """

    lmp: Any
    comm: Any  # mpi4py communicator of the LAMMPS world (None in a serial non-MPI build)
    step: int
    time: float  # simulation time (LAMMPS time units)
    phases: tuple[str, ...]
    op_indices: np.ndarray
    local_index: np.ndarray  # int64 rows among LAMMPS' local atoms
    ids: np.ndarray
    types: np.ndarray
    positions: np.ndarray  # (n, 3) LAMMPS length units, as gathered (not denoised)
    result: Any  # lpfm_insitu.model.inference.PhaseResult for these atoms
    length_scale: float
    box_lo: np.ndarray
    box_hi: np.ndarray
    tilts: tuple[float, float, float]  # (xy, yz, xz) as LAMMPS' extract_box gives them
    periodic: tuple[bool, bool, bool]
    n_ghost: int  # ghost atoms used by the model on this rank
    invocation: int  # 0 for the first invocation of this classifier
    timings: dict[str, float] = field(default_factory=dict)  # seconds, this invocation

    @property
    def labels(self) -> np.ndarray:
        return self.result.labels

    @property
    def confidence(self) -> np.ndarray:
        return self.result.confidence

    @property
    def ops(self) -> np.ndarray:
        return self.result.logits

    @property
    def probability(self) -> np.ndarray:
        return self.result.probability

    @property
    def displacement(self) -> np.ndarray:
        return self.result.displacement

    @property
    def n(self) -> int:
        return len(self.local_index)

    @property
    def rank(self) -> int:
        return world_rank(self.comm)

    def velocities(self) -> np.ndarray:
        """(n, 3) velocities of these atoms (a copy), read from LAMMPS on demand."""
        n_local = int(self.lmp.extract_global("nlocal"))
        if n_local == 0 or self.n == 0:
            return np.zeros((self.n, 3))
        v = self.lmp.numpy.extract_atom("v", nelem=n_local, dim=3)
        return np.array(v, dtype=np.float64).reshape(-1, 3)[self.local_index]

    def box(self):
        """``(lo, hi, (xy, xz, yz))``: the box in the form ``write_snapshot`` takes."""
        xy, yz, xz = self.tilts
        return (self.box_lo.copy(), self.box_hi.copy(), (xy, xz, yz))
