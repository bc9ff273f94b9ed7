"""Reading a rank's local and ghost atoms out of a running LAMMPS instance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .whole_axes import whole_axes


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
    #: periodic axes along which this rank holds the whole box (``whole_axes``)
    whole: tuple[bool, bool, bool] = (False, False, False)

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
    periodic = tuple(bool(p) for p in periodicity)
    return Subdomain(ids, types, positions.reshape(-1, 3), n_local,
                     int(lmp.extract_global("ntimestep")), np.array(lo), np.array(hi),
                     (xy, yz, xz), periodic, whole_axes(lmp, periodic))


def custom_datatype(name: str):
    """The LAMMPS data type constant of a custom column, from its prefix.

    Given explicitly because LAMMPS 29Sep2021 reports ``d2_``/``i2_`` arrays as 1-d
    (``extract_atom_datatype`` says LAMMPS_DOUBLE), and the numpy wrapper then fails.
    """
    from lammps import LAMMPS_DOUBLE, LAMMPS_DOUBLE_2D, LAMMPS_INT, LAMMPS_INT_2D

    for prefix, dtype in (("i2_", LAMMPS_INT_2D), ("d2_", LAMMPS_DOUBLE_2D),
                          ("i_", LAMMPS_INT), ("d_", LAMMPS_DOUBLE)):
        if name.startswith(prefix):
            return dtype
    return None


def custom_property(lmp, name: str, n_local: int, width: int | None = None) -> np.ndarray:
    """A writable view of a ``fix property/atom`` column (``i_name``, ``d_name``, ``d2_name``)."""
    if n_local == 0:
        return np.zeros((0,) if width is None else (0, width))
    dtype = custom_datatype(name)
    kwargs = {} if dtype is None else {"dtype": dtype}
    if width is None:
        view = lmp.numpy.extract_atom(name, nelem=n_local, **kwargs)
    else:
        view = lmp.numpy.extract_atom(name, nelem=n_local, dim=width, **kwargs)
    if view is None:
        raise KeyError(name)
    return view


def custom_width(lmp, name: str) -> int | None:
    """Columns of a per-atom array (``d2_``/``i2_``), or None if this rank cannot tell.

    LAMMPS stores such arrays as one contiguous block with a table of row pointers,
    so the distance between the first two row pointers is the row length. Needs room
    for at least two atoms on this rank (``nmax`` >= 2).
    """
    import ctypes

    if int(lmp.extract_global("nmax") or 0) < 2:
        return None
    raw = lmp.extract_atom(name, custom_datatype(name))
    if not raw:
        return None
    rows = ctypes.cast(raw, ctypes.POINTER(ctypes.c_void_p))
    if not rows[0] or not rows[1]:
        return None
    item = 8 if name.startswith("d2_") else 4
    return int((rows[1] - rows[0]) // item)
