"""Neighbour searches with open axes run periodic along all three (a stand-in period along
each open one): exactly the pairs and shifts of vesin's own mixed-boundary search."""

import itertools

import numpy as np
import pytest
import torch
import vesin

from lpfm_insitu.model.graph import open_graph, periodic_graph

CELL = np.array([[9.0, 0.0, 0.0], [2.5, 8.0, 0.0], [-1.5, 1.8, 10.0]])


def _edge_set(edge_index, shifts, lengths):
    edge_index, shifts, lengths = (np.asarray(torch.as_tensor(a).cpu())
                                   for a in (edge_index, shifts, lengths))
    keys = np.column_stack([edge_index.T, np.round(shifts, 6)])
    order = np.lexsort(keys.T[::-1])
    return keys[order], lengths[order]


def _reference(positions, cell, pbc, cutoff):
    """vesin's own search with these boundaries (receiver, sender, shift as the graph)."""
    i, j, s, d = vesin.NeighborList(cutoff=cutoff, full_list=True).compute(
        positions, cell, list(pbc), "ijSd")
    shifts = -(s.astype(float) @ cell) if any(pbc) else np.zeros((len(i), 3))
    return _edge_set(np.stack([j, i]).astype(np.int64), shifts, d)


@pytest.mark.parametrize("pbc", list(itertools.product((False, True), repeat=3)))
@pytest.mark.parametrize("device", [None, torch.device("cpu")], ids=["vesin", "vesin-torch"])
def test_every_boundary_finds_the_pairs_of_vesins_own_search(pbc, device):
    rng = np.random.default_rng(7)
    # atoms inside the cell along periodic axes and beyond it (ghosts) along open ones,
    # a few strays just outside it along periodic ones (an MD code between reneighborings)
    fractional = rng.uniform(0.0, 1.0, (300, 3))
    fractional[:, ~np.array(pbc)] = rng.uniform(-0.6, 1.6, (300, int((~np.array(pbc)).sum())))
    fractional[:5] += 0.02 * np.array(pbc)
    positions = fractional @ CELL
    cutoff = 3.7
    graph = periodic_graph(positions, CELL, pbc, cutoff, device=device)
    keys, lengths = _edge_set(graph.edge_index, graph.shifts, graph.lengths)
    ref_keys, ref_lengths = _reference(positions, CELL, pbc, cutoff)
    assert len(keys) > 300
    np.testing.assert_array_equal(keys[:, :2], ref_keys[:, :2])
    np.testing.assert_allclose(keys[:, 2:], ref_keys[:, 2:], atol=1e-6)
    np.testing.assert_allclose(lengths, ref_lengths, rtol=1e-12)
    # edges come grouped by receiver, as the network's message sums expect
    receiver = np.asarray(torch.as_tensor(graph.edge_index[1]).cpu())
    assert np.all(np.diff(receiver) >= 0)


def test_open_space_ignores_far_atoms_and_a_zero_cell():
    positions = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [1e5, 0.0, 0.0]])
    graph = open_graph(positions, 3.0)
    assert sorted(map(tuple, graph.edge_index.T.tolist())) == [(0, 1), (1, 0)]
    np.testing.assert_array_equal(graph.shifts, 0.0)
