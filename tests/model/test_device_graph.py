"""The device-resident path (graph searched by vesin-torch where the model runs, edges and
neighbour average as tensors there), which the model takes on a GPU, run on the CPU: it
must give the host path's answers."""

import numpy as np
import pytest
import torch
from ase.build import bulk

from lpfm_insitu.model.graph import open_graph, periodic_graph
from lpfm_insitu.model.inference import PhaseModel
from lpfm_insitu.model.network import ModelSpec, build_network

SMALL = {"channels": 8, "correlation": 2, "max_ell": 2, "num_interactions": 2, "r_max": 4.6}
PHASES = ("A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c")


@pytest.fixture(scope="module")
def averaging_model():
    torch.manual_seed(0)
    spec = ModelSpec(phases=PHASES, backbone=SMALL, decoder={"shape_invariants": True})
    return PhaseModel(build_network(spec), PHASES, averaging_radius=3.5)


def _edges(graph):
    s, r = (np.asarray(torch.as_tensor(a).cpu()) for a in graph.edge_index)
    shifts = np.asarray(torch.as_tensor(graph.shifts).cpu())
    return {(a, b, *np.round(v, 6)) for a, b, v in zip(s.tolist(), r.tolist(), shifts)}


@pytest.mark.parametrize("pbc", [True, (True, True, False)])
def test_the_device_search_finds_the_host_searchs_edges(pbc):
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(3)
    atoms.rattle(0.1, seed=1)
    host = periodic_graph(atoms.positions, atoms.cell, pbc, 4.0)
    device = periodic_graph(atoms.positions, atoms.cell, pbc, 4.0, device=torch.device("cpu"))
    assert torch.is_tensor(device.edge_index) and device.edge_index.dtype == torch.int64
    assert _edges(host) == _edges(device)
    assert bool((device.edge_index[1][1:] >= device.edge_index[1][:-1]).all())
    np.testing.assert_allclose(np.sort(host.lengths), np.sort(device.lengths.numpy()))
    assert _edges(open_graph(atoms.positions, 4.0)) == \
        _edges(open_graph(atoms.positions, 4.0, device=torch.device("cpu")))


def test_the_device_path_classifies_as_the_host_path(averaging_model, monkeypatch):
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(4)
    atoms.rattle(0.15, seed=2)
    host = averaging_model.classify_atoms(atoms, denoise_steps=1)
    monkeypatch.setattr(PhaseModel, "graph_device", lambda self: self.device)
    device = averaging_model.classify_atoms(atoms, denoise_steps=1)
    np.testing.assert_allclose(device.logits, host.logits, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(device.labels, host.labels)
    np.testing.assert_allclose(device.displacement, host.displacement, rtol=0, atol=1e-6)
