"""The per-atom length scale: box-independent, right for every prototype, and it marks
free-surface atoms."""

import numpy as np
import pytest
from ase import Atom
from ase.build import bulk

from lpfm_insitu import load_model
from lpfm_insitu.model.graph import periodic_graph
from lpfm_insitu.model.inference import NoHalo
from lpfm_insitu.model import local_scale
from lpfm_insitu.model.local_scale import (REFERENCE_ATOMIC_VOLUME, SURFACE_OPENNESS,
                                           Neighbours, equivalent_nn_distance,
                                           estimate_local_scale)
from lpfm_insitu.training.prototypes import PROTOTYPE_LABELS, build_prototype
from lpfm_insitu.training.synthetic import ideal_supercell

FCC = "A_cF4_225_a"


def _neighbours(atoms, with_lengths=True, searches=None):
    """``estimate_local_scale``'s search of ``atoms`` (``searches``: a list the cutoffs
    it asked for are appended to)."""
    positions = atoms.get_positions()
    cell = np.asarray(atoms.cell)

    def neighbours(cutoff):
        if searches is not None:
            searches.append(cutoff)
        graph = periodic_graph(positions, cell, atoms.pbc, cutoff)
        sender, receiver = graph.edge_index

        def vectors(edges):
            return positions[receiver[edges]] - positions[sender[edges]] + graph.shifts[edges]

        return Neighbours(sender, receiver, graph.lengths if with_lengths else None, vectors)

    return neighbours


def _scales(atoms, searches=None):
    positions = atoms.get_positions()
    neighbours = _neighbours(atoms, searches=searches)
    typical = equivalent_nn_distance(atoms.get_volume() / len(atoms))
    return estimate_local_scale(positions, len(atoms), neighbours, NoHalo().forward,
                                2.4 * typical, REFERENCE_ATOMIC_VOLUME)


@pytest.mark.parametrize("label", PROTOTYPE_LABELS)
def test_every_prototype_gets_its_density_scale(label):
    """Ideal crystals at the reference density: scale 1 within 1% for all 25 prototypes
    (a first-shell length would be off by tens of % for diamond or graphite)."""
    atoms = ideal_supercell(label, REFERENCE_ATOMIC_VOLUME, 300)
    scales = _scales(atoms)
    np.testing.assert_allclose(scales.scale, 1.0, atol=0.01)
    assert scales.openness.max() < SURFACE_OPENNESS / 2
    assert not scales.at_surface.any()


def test_hot_crystals_scale_within_two_percent_and_are_not_surface():
    rng = np.random.default_rng(3)
    for label in (FCC, "A_cI2_229_a", "A_hP2_194_c", "A_cF8_227_a", "A_hP3_191_ad"):
        atoms = ideal_supercell(label, REFERENCE_ATOMIC_VOLUME, 300)
        atoms.positions += 0.15 * rng.standard_normal(atoms.positions.shape)
        scales = _scales(atoms)
        np.testing.assert_allclose(scales.scale, 1.0, atol=0.025, err_msg=label)
        assert not scales.at_surface.any(), label


def test_a_compressed_region_gets_its_own_scale():
    """Half a box compressed by 10% along z (a shock's picture): each half is scaled by its
    own density, where the box's density would be wrong for both."""
    atoms = build_prototype(FCC, REFERENCE_ATOMIC_VOLUME, primitive=False).repeat((5, 5, 12))
    z = atoms.positions[:, 2]
    length = atoms.cell[2, 2]
    squeezed = np.where(z < length / 2, 0.9 * z, 0.9 * length / 2 + (z - length / 2))
    atoms.positions[:, 2] = squeezed
    atoms.set_cell(np.diag([atoms.cell[0, 0], atoms.cell[1, 1], length * 0.95]))
    scales = _scales(atoms)
    inner_dense = (z > 0.1 * length) & (z < 0.4 * length)
    inner_loose = (z > 0.6 * length) & (z < 0.9 * length)
    np.testing.assert_allclose(scales.scale[inner_dense], 0.9 ** (-1 / 3), atol=0.01)
    np.testing.assert_allclose(scales.scale[inner_loose], 1.0, atol=0.01)


@pytest.fixture(scope="module")
def model():
    return load_model()


def _hot_cu_slab(vacuum):
    rng = np.random.default_rng(7)
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((5, 5, 6))
    atoms.positions += 0.1 * rng.standard_normal(atoms.positions.shape)
    atoms.center(vacuum=vacuum, axis=2)
    return atoms


def test_vacuum_changes_no_label_and_surfaces_are_unknown(model):
    """A Cu slab in a box 1x and 4x its thickness: the same OPs at step 0 (to float32
    summation order: the neighbour lists differ in order), identical labels after 8
    denoising steps; interior FCC; the outer layers unknown."""
    thin, thick = _hot_cu_slab(10.8), _hot_cu_slab(43.4)
    np.testing.assert_allclose(model.classify_atoms(thin).logits,
                               model.classify_atoms(thick).logits, atol=1e-3)
    one = model.classify_atoms(thin, denoise_steps=8)
    four = model.classify_atoms(thick, denoise_steps=8)
    np.testing.assert_array_equal(one.labels, four.labels)
    z = thin.positions[:, 2]
    interior = (z > z.min() + 5) & (z < z.max() - 5)
    outer = (z < z.min() + 0.5) | (z > z.max() - 0.5)
    names = np.array(one.label_names)
    assert (names[interior] == FCC).all()
    assert (names[outer] == "unknown").all()
    assert one.at_surface[outer].all() and not one.at_surface[interior].any()


def test_open_atoms_need_no_nn_distance(model):
    """A cluster in open space (no cell at all): its core is FCC without nn_distance,
    and the answer equals that of the same cluster in a periodic box of vacuum."""
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(7)
    centre = atoms.positions.mean(axis=0)
    atoms = atoms[np.linalg.norm(atoms.positions - centre, axis=1) < 11.0]
    boxed = atoms.copy()
    boxed.center(vacuum=12.0)
    boxed.pbc = True
    atoms.set_cell(np.zeros((3, 3)))
    atoms.pbc = False
    open_result = model.classify_atoms(atoms)
    boxed_result = model.classify_atoms(boxed)
    np.testing.assert_array_equal(open_result.labels, boxed_result.labels)
    core = np.linalg.norm(atoms.positions - atoms.positions.mean(axis=0), axis=1) < 6.0
    assert (np.array(open_result.label_names)[core] == FCC).all()


def test_a_fixed_nn_distance_still_overrides(model):
    atoms = _hot_cu_slab(10.8)
    fixed = model.classify_atoms(atoms, nn_distance=3.615 / np.sqrt(2))
    np.testing.assert_allclose(fixed.length_scale, fixed.length_scale[0])
    assert not fixed.at_surface.any()


def test_the_search_lengths_give_the_same_scales_as_recomputed_ones():
    """The local scale may take the search's own edge lengths (what the model passes)
    instead of measuring the vectors again: the same scales and openness."""
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(4)
    atoms.rattle(0.1, seed=5)
    positions = atoms.get_positions()
    typical = equivalent_nn_distance(atoms.get_volume() / len(atoms))
    a, b = (estimate_local_scale(positions, len(atoms), _neighbours(atoms, w), NoHalo().forward,
                                 2.4 * typical, REFERENCE_ATOMIC_VOLUME) for w in (False, True))
    np.testing.assert_allclose(a.scale, b.scale, rtol=1e-12)
    np.testing.assert_allclose(a.openness, b.openness, rtol=1e-9, atol=1e-12)


def test_a_graph_cut_down_with_its_own_lengths_keeps_the_same_edges():
    """``Graph.within(None, r)`` (the search's lengths) keeps the edges that recomputing
    the lengths from the positions keeps."""
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(3)
    atoms.rattle(0.1, seed=6)
    positions = atoms.get_positions()
    graph = periodic_graph(positions, np.asarray(atoms.cell), atoms.pbc, 6.0)
    own, recomputed = graph.within(None, 3.0), graph.within(positions, 3.0)
    np.testing.assert_array_equal(own.edge_index, recomputed.edge_index)
    np.testing.assert_allclose(own.lengths, recomputed.lengths, rtol=1e-12)
    assert 0 < own.n_edges < graph.n_edges


def test_a_cluster_of_surface_atoms_only_classifies_as_unknown(model):
    """Every atom exposed (a thin film, a small cluster), so no atom has an unexposed
    neighbour to take its scale from: it still classifies (this used to fail in numpy's
    integer-typed empty bincount), and every atom is unknown."""
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((3, 3, 1))
    atoms.center(vacuum=8.0)
    result = model.classify_atoms(atoms)
    assert result.at_surface.all()
    assert set(result.label_names) == {"unknown"}


@pytest.mark.parametrize("case", ["hot fcc", "diamond", "lone atom"])
def test_the_short_first_search_gives_the_answer_of_the_full_one(case, monkeypatch):
    """The scale searches out to 2.1 typical distances first and only searches again
    where a kernel or a K-nearest set reaches past that: a hot metal needs one short
    search, diamond (kernels to 2.2) a second one, an atom alone in the vacuum beside a
    slab (no neighbours) the full one; the scales and openness are those of one full
    search."""
    rng = np.random.default_rng(11)
    if case == "lone atom":
        atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(4)
        atoms.center(vacuum=10.0, axis=2)
        atoms.append(Atom("Cu", atoms.cell.diagonal() * [0.5, 0.5, 0.98]))
    else:
        label = FCC if case == "hot fcc" else "A_cF8_227_a"
        atoms = ideal_supercell(label, REFERENCE_ATOMIC_VOLUME, 300)
    atoms.positions += 0.12 * rng.standard_normal(atoms.positions.shape)
    searches = []
    short = _scales(atoms, searches)
    monkeypatch.setattr(local_scale, "FIRST_SEARCH_FRACTION", 1.0)
    full = _scales(atoms)
    np.testing.assert_allclose(short.scale, full.scale, rtol=1e-12)
    np.testing.assert_allclose(short.openness, full.openness, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(short.isolated, full.isolated)
    typical = equivalent_nn_distance(atoms.get_volume() / len(atoms))
    reach = 2.4 * typical
    assert searches[0] == pytest.approx(2.1 * typical)
    if case == "hot fcc":
        assert len(searches) == 1
    elif case == "diamond":
        assert len(searches) == 2 and searches[0] < searches[1] < reach
    else:
        assert searches[1:] == [pytest.approx(reach)]


def test_the_network_graph_cut_from_the_reused_search_is_the_two_step_cut():
    """``scaled_graph`` cuts the scale's own search once, to each receiver's radius: the
    same edges, in the same order, as cutting to the widest radius first."""
    from lpfm_insitu.model.neighbourhood import reusing_search, scaled_graph, within_scaled

    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(4)
    atoms.rattle(0.15, seed=8)
    positions = atoms.get_positions()
    cell = np.asarray(atoms.cell)
    scales = _scales(atoms)
    scales.search_reach = 2.4 * equivalent_nn_distance(atoms.get_volume() / len(atoms))
    scales.search_graph = periodic_graph(positions, cell, True, scales.search_reach)
    assert np.ptp(scales.scale) > 0

    def graph_of(input_positions, cutoff):
        return periodic_graph(input_positions, cell, True, cutoff)

    radius = 4.6
    once = scaled_graph(positions, reusing_search(scales, positions, graph_of), scales.scale,
                        radius)
    widest = scales.search_graph.within(None, radius / scales.scale.min())
    twice = within_scaled(widest, positions, scales.scale, radius)
    np.testing.assert_array_equal(once.edge_index, twice.edge_index)
    np.testing.assert_array_equal(once.shifts, twice.shifts)
    assert 0 < once.n_edges < widest.n_edges
