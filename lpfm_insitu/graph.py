"""Neighbour graphs for the network: a periodic cell, or an open subdomain with ghosts.

matscipy's cell-list neighbour search is linear in the number of atoms and written in C;
it is the same search mace-torch uses for its own data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matscipy.neighbours import neighbour_list


@dataclass
class Graph:
    """Edges ``sender -> receiver`` with Cartesian shift vectors (zero for open subdomains)."""

    edge_index: np.ndarray  # (2, n_edges) int64
    shifts: np.ndarray  # (n_edges, 3) float64

    @property
    def n_edges(self) -> int:
        return self.edge_index.shape[1]

    def within(self, positions: np.ndarray, cutoff: float) -> "Graph":
        """The edges no longer than ``cutoff``: a shorter-range graph without a new search."""
        sender, receiver = self.edge_index
        lengths = np.linalg.norm(positions[receiver] - positions[sender] + self.shifts, axis=1)
        keep = lengths < cutoff  # matscipy's neighbour_list keeps d < cutoff as well
        return Graph(self.edge_index[:, keep], self.shifts[keep])


def periodic_graph(positions: np.ndarray, cell: np.ndarray, pbc, cutoff: float) -> Graph:
    """Graph of a periodic (or partly periodic) cell; positions in the same units as cutoff."""
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if not pbc.all():
        # matscipy bins atoms inside the cell: give open directions an enclosing box.
        positions = positions - np.where(pbc, 0.0, positions.min(axis=0) - cutoff)
        cell = _enclosing_cell(positions, cell, pbc, cutoff)
    i, j, shift_counts = neighbour_list("ijS", positions=positions, cell=cell, pbc=pbc,
                                        cutoff=cutoff)
    return Graph(np.stack([i, j]).astype(np.int64), shift_counts.astype(np.float64) @ cell)


def open_graph(positions: np.ndarray, cutoff: float) -> Graph:
    """Graph of atoms in open space, as a rank's local plus ghost atoms are."""
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    if len(positions) == 0:
        return Graph(np.zeros((2, 0), np.int64), np.zeros((0, 3)))
    lo = positions.min(axis=0) - cutoff
    hi = positions.max(axis=0) + cutoff
    cell = np.diag(np.maximum(hi - lo, 3.0 * cutoff))
    i, j = neighbour_list("ij", positions=positions - lo, cell=cell, pbc=[False] * 3,
                          cutoff=cutoff)
    return Graph(np.stack([i, j]).astype(np.int64), np.zeros((len(i), 3)))


def _enclosing_cell(positions, cell, pbc, cutoff):
    cell = cell.copy()
    extent = positions.max(axis=0) - positions.min(axis=0) if len(positions) else np.zeros(3)
    for axis in np.flatnonzero(~pbc):
        if np.linalg.norm(cell[axis]) < extent[axis] + 2 * cutoff:
            cell[axis] = 0.0
            cell[axis, axis] = extent[axis] + 3 * cutoff
    return cell
