"""A periodic cell presented as a subdomain: its atoms owned, their periodic images ghosts.

This is what a single MPI rank of LAMMPS sees, without LAMMPS: the subdomain path
(``PhaseModel.classify_subdomain``) can then be checked against the periodic one, and
timed at any ratio of ghosts to owned atoms (a small cell with a thick shell has many).
"""

from __future__ import annotations

import numpy as np


class ImageHalo:
    """``HaloExchange`` for ghosts that are periodic images of owned atoms, in one process."""

    def __init__(self, owner_of: np.ndarray):
        self.owner_of = np.asarray(owner_of)
        self.n_local = int(self.owner_of.max()) + 1

    def forward(self, local_values):
        return local_values[self.owner_of]

    def reverse(self, all_values):
        out = np.zeros((self.n_local,) + all_values.shape[1:])
        np.add.at(out, self.owner_of, all_values)
        return out


def with_ghost_images(atoms, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """``(positions, owner_of)``: the cell's atoms first, then every periodic image within
    ``reach`` of the atoms' bounding box (from the 26 neighbouring cells, so ``reach``
    must not exceed the cell's width)."""
    cell = np.asarray(atoms.cell)
    shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)
                       if (i, j, k) != (0, 0, 0)]) @ cell
    lo, hi = atoms.positions.min(axis=0) - reach, atoms.positions.max(axis=0) + reach
    positions, owners = [atoms.positions], [np.arange(len(atoms))]
    for shift in shifts:
        images = atoms.positions + shift
        keep = np.all((images > lo) & (images < hi), axis=1)
        positions.append(images[keep])
        owners.append(np.flatnonzero(keep))
    return np.concatenate(positions), np.concatenate(owners)
