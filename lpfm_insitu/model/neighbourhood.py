"""Neighbourhoods in each atom's own model units: scaled neighbour graphs and logit averages.

Every atom has its own length scale (``local_scale``), so "within r_max" means a different
input-unit distance for each receiver. These helpers search once at the widest radius and
keep the edges that are short enough in their receiver's model units, reuse the local
scale's own search where it reached far enough, and average logits over such a
neighbourhood (``PhaseModel.averaging_radius``), and size neighbour searches from a
configuration's typical neighbour distance.
"""

from __future__ import annotations

import numpy as np
import torch

from .graph import Graph
from .local_scale import LocalScale, equivalent_nn_distance


class ReusedSearch:
    """A ``graph_of(positions, cutoff)`` that cuts the local scale's own neighbour search
    down where that search was of these very positions and reached far enough (the first
    pass of a run), and searches anew otherwise."""

    def __init__(self, scales: LocalScale, positions: np.ndarray, graph_of):
        self.search, self.reach = scales.search_graph, scales.search_reach
        self.positions, self.graph_of = positions, graph_of

    def whole(self, input_positions, cutoff) -> Graph | None:
        """The whole search, where it was of these positions and reaches ``cutoff``."""
        if input_positions is self.positions and cutoff <= self.reach:
            return self.search
        return None

    def __call__(self, input_positions, cutoff):
        whole = self.whole(input_positions, cutoff)
        if whole is not None:
            return whole.within(None, cutoff)  # its own positions: keep its lengths
        return self.graph_of(input_positions, cutoff)


def reusing_search(scales: LocalScale, positions: np.ndarray, graph_of):
    """``graph_of``, reusing the local scale's search where it has one (``ReusedSearch``)."""
    if scales.search_graph is None:
        return graph_of
    return ReusedSearch(scales, positions, graph_of)


def scaled_graph(positions: np.ndarray, graph_of, atom_scale: np.ndarray, radius: float) -> Graph:
    """The edges ``sender -> receiver`` no longer than ``radius`` in the receiver's model
    units (its length times the receiver's scale)."""
    smallest = float(atom_scale.min()) if len(atom_scale) else 1.0
    whole = graph_of.whole(positions, radius / smallest) \
        if isinstance(graph_of, ReusedSearch) else None
    if whole is not None and len(atom_scale) and np.ptp(atom_scale) > 0.0:
        # one cut of the reused search: an edge within its receiver's radius is within
        # radius / smallest as well, so cutting to that first only copied edges twice
        return within_scaled(whole, positions, atom_scale, radius)
    graph = graph_of(positions, radius / smallest)
    if len(atom_scale) == 0 or np.ptp(atom_scale) == 0.0:
        return graph  # one scale: the search's own cutoff is the radius
    return within_scaled(graph, positions, atom_scale, radius)


def within_scaled(graph: Graph, positions: np.ndarray, atom_scale: np.ndarray,
                  radius: float) -> Graph:
    """``graph``'s edges no longer than ``radius`` in their receiver's model units (numpy
    arrays, or tensors on a device graph's device)."""
    sender, receiver = graph.edge_index
    if torch.is_tensor(receiver):
        scale = torch.as_tensor(np.asarray(atom_scale), device=receiver.device)
        lengths = graph.lengths if graph.lengths is not None else torch.linalg.vector_norm(
            torch.as_tensor(positions, device=receiver.device)[receiver]
            - torch.as_tensor(positions, device=receiver.device)[sender] + graph.shifts, dim=1)
        keep = lengths.to(scale.dtype) * scale[receiver] < radius
    else:
        lengths = graph.lengths if graph.lengths is not None else np.linalg.norm(
            positions[receiver] - positions[sender] + graph.shifts, axis=1)
        keep = lengths * atom_scale[receiver] < radius
    return Graph(graph.edge_index[:, keep], graph.shifts[keep], lengths[keep])


def average_over_neighbours(logits, model_positions, n_owned, graph_of, halo, radius: float,
                            network_graph: Graph | None = None,
                            atom_scale: np.ndarray | None = None):
    """Each owned atom's logits averaged with those of its neighbours within ``radius``.

    ``graph_of(positions, cutoff)`` builds the neighbour graph as for the network;
    ``network_graph``, the network's own graph of these positions, saves that search
    (the radius is at most the network's cutoff, so its edges are a subset).
    Collective on a subdomain (the ghosts' logits come from their owners), so every
    rank calls it whatever its atom count.
    """
    if radius == 0.0:
        return logits
    every_atom = halo.forward(logits)  # ghosts get their owners' logits
    if n_owned == 0:
        return logits
    if atom_scale is None:
        atom_scale = np.ones(len(model_positions))
    graph = network_graph if network_graph is not None else \
        scaled_graph(model_positions, graph_of, atom_scale, radius)
    graph = within_scaled(graph, model_positions, atom_scale, radius)
    # on the graph's device (a GPU's for a device graph); every pair is there both
    # ways, so summing senders into owned receivers sums each owned atom's neighbours
    edge_index = torch.as_tensor(graph.edge_index)
    sender, receiver = edge_index[0], edge_index[1]
    device = receiver.device
    keep = receiver < n_owned
    centre, neighbour = receiver[keep], sender[keep]
    every_atom = torch.as_tensor(np.asarray(every_atom, dtype=np.float64), device=device)
    summed = torch.as_tensor(np.array(logits, dtype=np.float64), device=device).index_add_(
        0, centre, every_atom[neighbour])
    count = 1.0 + torch.bincount(centre, minlength=n_owned).to(summed.dtype)
    return (summed / count[:, None]).cpu().numpy()


def typical_neighbour_distance(positions: np.ndarray, cell: np.ndarray, pbc) -> float:
    """An upper estimate of the nearest-neighbour distance, to size neighbour searches.

    The box's volume per atom overestimates it where there is vacuum; 1.6 x the mean
    nearest distance (thermal noise pulls that ~10% low, and an open structure's first
    shell is short for its density) bounds it there.
    """
    from scipy.spatial import cKDTree

    if len(positions) < 2:
        return 1.0
    estimates = []
    if np.all(pbc):
        volume = abs(np.linalg.det(cell))
        if volume > 0:
            estimates.append(equivalent_nn_distance(volume / len(positions)))
    nearest, _ = cKDTree(positions).query(positions, k=2, workers=torch.get_num_threads())
    estimates.append(1.6 * float(np.mean(nearest[:, 1])))
    return min(estimates)
