"""Axes along which a rank holds the whole periodic box: periodic there, no ghost images.

LAMMPS gives a rank that spans the box along a periodic axis (one process along it, as
the y and z axes of a 2-rank run) ghost copies of its own atoms across that axis, and of
every ghost across it again. Classified as an open subdomain, those images are atoms the
model evaluates a second time: on 2 ranks of a 10^4-atom fcc Cu cube the model evaluated
1.87 ghosts per owned atom, of which only the shell along the split axis (0.64) is
needed. Along whole axes the rank's neighbour searches are periodic instead (the box's
own cell vectors), and one row per atom and image along the other axes is kept. Every
owned atom's neighbourhood is the same set of atoms at the same separations, so answers
do not change (up to the order of float sums), whatever the decomposition.
"""

from __future__ import annotations

import numpy as np


def whole_axes(lmp, periodic) -> tuple[bool, bool, bool]:
    """Periodic axes along which this rank's subdomain is the whole box."""
    if int(lmp.extract_global("triclinic") or 0):
        lo = lmp.extract_global("sublo_lambda")
        hi = lmp.extract_global("subhi_lambda")
        box_lo, box_hi = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    else:
        lo, hi = lmp.extract_global("sublo"), lmp.extract_global("subhi")
        box_lo, box_hi = lmp.extract_global("boxlo"), lmp.extract_global("boxhi")
    if lo is None or hi is None:  # a LAMMPS without these keywords: classify as open
        return (False, False, False)
    # LAMMPS sets a lone rank's bounds to the box's own values (the last rank's upper
    # bound along a split axis too), so equality is exact
    return tuple(bool(p) and float(lo[d]) <= float(box_lo[d]) and float(hi[d]) >= float(box_hi[d])
                 for d, p in enumerate(periodic))


def subdomain_cell(sub, max_atoms_per_chunk: int | None = None
                   ) -> tuple[np.ndarray, tuple[bool, bool, bool]]:
    """The box's cell vectors (rows) and the axes a rank's subdomain ``sub`` is periodic
    along: its whole axes. None when the model evaluates in chunks: its slabs are cut
    along one axis in open space (``chunking``).
    """
    from .halo import box_matrix

    cell = box_matrix(sub.box_lo, sub.box_hi, sub.tilts).T
    if max_atoms_per_chunk is not None:
        return cell, (False, False, False)
    return cell, tuple(sub.whole)


def one_row_per_image(ids: np.ndarray, positions: np.ndarray, cell: np.ndarray,
                      whole) -> np.ndarray:
    """Sorted indices of the rows to keep: of the copies of an atom that differ only by
    cell vectors along ``whole`` axes, the first (owned rows come first, so an owned
    atom keeps its own row and loses its images).

    ``cell`` has the cell vectors as rows. Copies of one atom differ by whole cell
    vectors (LAMMPS adds box lengths), so their fractional offsets from the atom's first
    row round to the image each copy is.
    """
    whole = np.asarray(whole, dtype=bool)
    n = len(ids)
    if n == 0 or not whole.any():
        return np.arange(n)
    fractional = np.linalg.solve(np.asarray(cell, float).T, np.asarray(positions, float).T).T
    order = np.argsort(ids, kind="stable")  # each atom's rows together, in row order
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    first_row = order[np.repeat(starts, np.diff(np.r_[starts, n]))]
    image = np.rint(fractional[order] - fractional[first_row]).astype(np.int64)
    image[:, whole] = 0
    key = np.column_stack([sorted_ids.astype(np.int64), image])
    _, first = np.unique(key, axis=0, return_index=True)  # stable: the earliest row
    return np.sort(order[first])
