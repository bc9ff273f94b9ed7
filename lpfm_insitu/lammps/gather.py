"""Reading a rank's local and ghost atoms out of a running LAMMPS instance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Subdomain:
    """A rank's atoms: the first ``n_local`` rows are owned, the rest are ghosts."""

    ids: np.ndarray  # int64 (n_all,)
    types: np.ndarray  # int32 (n_all,)
    positions: np.ndarray  # float64 (n_all, 3), a copy: LAMMPS' own coordinates stay untouched
    n_local: int
    step: int
    box_lo: np.ndarray
    box_hi: np.ndarray
    tilts: tuple[float, float, float]
    periodic: tuple[bool, bool, bool]

    @property
    def n_ghost(self) -> int:
        return len(self.ids) - self.n_local

    @property
    def volume(self) -> float:
        return float(np.prod(self.box_hi - self.box_lo))


def gather_subdomain(lmp) -> Subdomain:
    """Copy ids, types and positions of local plus ghost atoms from ``lmp``."""
    n_local = int(lmp.extract_global("nlocal"))
    n_all = n_local + int(lmp.extract_global("nghost"))
    if n_all == 0:
        ids = np.zeros(0, np.int64)
        types = np.zeros(0, np.int32)
        positions = np.zeros((0, 3))
    else:
        ids = np.array(lmp.numpy.extract_atom("id", nelem=n_all), dtype=np.int64)
        types = np.array(lmp.numpy.extract_atom("type", nelem=n_all), dtype=np.int32)
        positions = np.array(lmp.numpy.extract_atom("x", nelem=n_all, dim=3), dtype=np.float64)
    lo, hi, xy, yz, xz, periodicity, _ = lmp.extract_box()
    return Subdomain(ids, types, positions.reshape(-1, 3), n_local,
                     int(lmp.extract_global("ntimestep")), np.array(lo), np.array(hi),
                     (xy, yz, xz), tuple(bool(p) for p in periodicity))


def custom_property(lmp, name: str, n_local: int, width: int | None = None) -> np.ndarray:
    """A writable view of a ``fix property/atom`` column (``i_name``, ``d_name``, ``d2_name``)."""
    if n_local == 0:
        return np.zeros((0,) if width is None else (0, width))
    if width is None:
        view = lmp.numpy.extract_atom(name, nelem=n_local)
    else:
        view = lmp.numpy.extract_atom(name, nelem=n_local, dim=width)
    if view is None:
        raise KeyError(name)
    return view
