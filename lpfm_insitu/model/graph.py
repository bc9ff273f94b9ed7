"""Neighbour graphs for the network: a periodic cell, or an open subdomain with ghosts.

vesin's cell-list search is linear in the number of atoms, multi-threaded and handles
open, periodic and mixed boundaries with any cell (atoms may sit outside it along open
directions), so one call serves both cases. Its all-periodic search is the fast one:
with open axes beside periodic ones it costs up to 3.5 times as much per pair (below),
so every search runs periodic along all three axes, each open axis standing in as a
period longer than the atoms' extent plus twice the cutoff (``_periodic_stand_in``):
the same pairs, the same shifts.

With ``device`` (a torch device; the model uses it for CUDA), vesin-torch searches on that
device and the graph's arrays are torch tensors there, so nothing of the graph crosses
the bus. Without it, the arrays are numpy arrays on the host.

Edges come sorted by receiver (vesin's ``sorted=True``: each receiver's senders in the
search's own order, the same from run to run, not by index): the network sums messages
per receiver and needs no sort of its own then (``_slots``), and an atom's edges are
contiguous in memory. Half of such a search's time is vesin's sort (87 ms sorted, 42 ms
unsorted, for 20,000 atoms at 5.8 Å on one thread); a stable sort of the unsorted pairs by receiver
would be cheaper, but does not reproduce vesin's order within a receiver, so every
float sum over a receiver's edges would change.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np


@dataclass
class Graph:
    """Edges ``sender -> receiver`` with Cartesian shift vectors (zero for open subdomains).

    ``lengths``, when present, are the edge lengths of the positions the graph was built
    from (the search measures them anyway), so the neighbour average needs no new ones.
    """

    edge_index: np.ndarray  # (2, n_edges) int64 (a torch tensor for a device graph)
    shifts: np.ndarray  # (n_edges, 3) float64
    lengths: np.ndarray | None = None  # (n_edges,) float64

    @property
    def n_edges(self) -> int:
        return self.edge_index.shape[1]

    def within(self, positions: np.ndarray | None, cutoff: float) -> "Graph":
        """The edges no longer than ``cutoff``: a shorter-range graph without a new search.

        ``positions`` None: those the graph was searched on, whose ``lengths`` it keeps,
        so none are recomputed (the local scale's search has ~80 edges per atom: cutting
        it to the network's cutoff took 0.059 s of a 0.49 s classification of 10^4 atoms
        with the norms, 0.016 s without)."""
        sender, receiver = self.edge_index
        if positions is None:
            if self.lengths is None:
                raise ValueError("Graph.within(None, ...) needs the graph's own lengths")
            lengths = self.lengths
        else:
            lengths = np.linalg.norm(positions[receiver] - positions[sender] + self.shifts,
                                     axis=1)
        keep = lengths < cutoff  # the search keeps d < cutoff as well
        return Graph(self.edge_index[:, keep], self.shifts[keep], lengths[keep])


def periodic_graph(positions: np.ndarray, cell: np.ndarray, pbc, cutoff: float,
                   threads: int | None = None, device=None) -> Graph:
    """Graph of a periodic (or partly periodic) cell; positions in the same units as cutoff.

    ``threads``: CPU threads of the search (default: torch's, when torch is loaded);
    ``device``: search there with vesin-torch and return tensors there.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if device is not None:
        return _search_on(device, positions, cell, pbc, cutoff)
    return _search(positions, cell, pbc, cutoff, threads)


def open_graph(positions: np.ndarray, cutoff: float, threads: int | None = None,
               device=None) -> Graph:
    """Graph of atoms in open space, as a rank's local plus ghost atoms are."""
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell, pbc = np.zeros((3, 3)), np.zeros(3, dtype=bool)
    if device is not None:
        return _search_on(device, positions, cell, pbc, cutoff)
    return _search(positions, cell, pbc, cutoff, threads)


def subdomain_search(cell: np.ndarray | None = None, pbc=(False, False, False)):
    """``graph_of(positions, cutoff, device=None)`` of a rank's atoms with their ghosts:
    open space, or periodic along ``pbc`` with ``cell`` (rows: the cell vectors), for the
    axes along which the rank holds the whole box (``lammps.whole_axes``)."""
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if not pbc.any():
        return open_graph
    cell = np.asarray(cell, dtype=np.float64)

    def graph_of(positions, cutoff, threads=None, device=None):
        return periodic_graph(positions, cell, pbc, cutoff, threads, device)

    return graph_of


def _periodic_stand_in(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
                       cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions and a cell periodic along all three axes whose search finds exactly the
    pairs (and shifts) of ``positions`` in ``cell`` periodic along ``pbc`` only.

    Each open axis becomes a cell vector orthogonal to the periodic ones (and to the other
    open one), longer than the atoms' extent along it plus twice the cutoff, so no pair
    reaches across it; the atoms move by one vector along the open directions, which no
    pair vector sees. Why: vesin 0.6's search periodic along one axis and open along two
    took 0.140 s for 504,130 pairs, periodic along all three 0.040 s for the same pairs
    (a 2 x 2 x 1 grid's MPI rank of 10^4 fcc Cu atoms, 5.37 Å, one thread); periodic along
    two 0.070 -> 0.043 s; open along all three 0.097 -> 0.083 s.
    """
    open_axes = np.flatnonzero(~pbc)
    if len(open_axes) == 0:
        return positions, cell
    directions = _open_directions(cell[pbc])
    stand_in, moved = cell.copy(), positions.copy()
    for axis, direction in zip(open_axes, directions):
        along = positions @ direction
        stand_in[axis] = direction * (np.ptp(along) + 2.0 * cutoff + 1.0)
        moved -= along.min() * direction
    return moved, stand_in


def _open_directions(periodic: np.ndarray) -> np.ndarray:
    """Unit vectors orthogonal to the periodic cell vectors and to each other, one per
    open axis."""
    if len(periodic) == 0:
        return np.eye(3)
    if len(periodic) == 2:
        normal = np.cross(periodic[0], periodic[1])
        return (normal / np.linalg.norm(normal))[None]
    along = periodic[0] / np.linalg.norm(periodic[0])
    helper = np.eye(3)[int(np.argmin(np.abs(along)))]  # the axis least along it
    first = helper - (helper @ along) * along
    first /= np.linalg.norm(first)
    return np.stack([first, np.cross(along, first)])


def _search(positions, cell, pbc, cutoff, threads) -> Graph:
    import vesin

    if len(positions) == 0:
        return Graph(np.zeros((2, 0), np.int64), np.zeros((0, 3)), np.zeros(0))
    search = vesin.NeighborList(cutoff=float(cutoff), full_list=True, sorted=True,
                                n_threads=_threads() if threads is None else int(threads))
    points, box = _periodic_stand_in(positions, cell, pbc, float(cutoff))
    # vesin sorts by its first index: make that the receiver. The list holds every pair
    # both ways, (j, i, -S) beside (i, j, S), so this is the same set of edges.
    i, j, shift_counts, lengths = search.compute(points, box, [True, True, True], "ijSd",
                                                 copy=False)
    edge_index = np.stack([j, i]).astype(np.int64)
    # no pair crosses an open axis' stand-in period: its shift counts are zero
    shifts = -(shift_counts[:, pbc].astype(np.float64) @ cell[pbc]) if pbc.any() else \
        np.zeros((len(i), 3))
    return Graph(edge_index, shifts, np.array(lengths, dtype=np.float64))


def _search_on(device, positions, cell, pbc, cutoff) -> Graph:
    """As ``_search``, with vesin-torch on ``device``: the arrays are tensors there."""
    import torch
    import vesin.torch

    if len(positions) == 0:
        box = torch.as_tensor(cell, device=device)
        return Graph(torch.zeros((2, 0), dtype=torch.int64, device=device),
                     box.new_zeros((0, 3)), box.new_zeros(0))
    moved, stand_in = _periodic_stand_in(positions, cell, pbc, float(cutoff))
    points = torch.as_tensor(moved, device=device)
    box = torch.as_tensor(stand_in, device=device)
    search = vesin.torch.NeighborList(cutoff=float(cutoff), full_list=True, sorted=True)
    i, j, shift_counts, lengths = search.compute(
        points, box, torch.ones(3, dtype=torch.bool, device=device), "ijSd")
    periodic = torch.tensor(pbc.tolist(), device=device)
    # zero along open axes: no pair crosses their stand-in period
    shifts = -(shift_counts.to(box.dtype) @ (box * periodic[:, None].to(box.dtype)))
    return Graph(torch.stack([j, i]).to(torch.int64), shifts, lengths.to(box.dtype))


def _threads() -> int:
    """torch's CPU threads, which the caller sized for its share of the node (in situ: the
    node's cores over its ranks); all cores when torch is not loaded."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else 0
