"""A rank that holds the whole box along an axis: periodic there, without ghost images."""

import itertools

import numpy as np
import pytest
import torch
from ase import Atoms

from lpfm_insitu.lammps.whole_axes import one_row_per_image, whole_axes
from lpfm_insitu.model.image_halo import ImageHalo
from lpfm_insitu.model.inference import PhaseModel
from lpfm_insitu.model.local_scale import equivalent_nn_distance
from lpfm_insitu.model.network import ModelSpec, build_network

PHASES = ("A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c")
TILTED = np.array([[10.8, 0.0, 0.0], [2.1, 10.8, 0.0], [-1.7, 1.3, 10.8]])


def _rattled_fcc_cell(cell, seed=0, sigma=0.1):
    """FCC at 15 A^3/atom filling ``cell`` (6 x 6 x 6 conventional-cell units, rows)."""
    a = (4 * 15.0) ** (1 / 3)
    grid = np.array(list(itertools.product(range(6), repeat=3)), float)
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    fractional = ((grid[:, None, :] + basis[None]) / 6.0).reshape(-1, 3)
    cell = np.asarray(cell, float) * (6 * a / 10.8)
    positions = fractional @ cell + np.random.default_rng(seed).normal(0, sigma, (len(grid) * 4, 3))
    return Atoms("Cu" * len(positions), positions=positions, cell=cell, pbc=True)


def _images(atoms, reach, axes):
    """Positions and owners: the cell's atoms, then their images across ``axes`` (0, 1, 2)
    within ``reach`` of the cell (in fractional extent), as LAMMPS' ghosts."""
    cell = np.asarray(atoms.cell)
    grow = reach * np.linalg.norm(np.linalg.inv(cell), axis=0)  # fractional extent
    fractional = atoms.get_scaled_positions(wrap=False)
    positions, owners = [atoms.positions], [np.arange(len(atoms))]
    for shift in itertools.product((-1, 0, 1), repeat=3):
        if shift == (0, 0, 0) or any(s and d not in axes for d, s in enumerate(shift)):
            continue
        moved = fractional + shift
        keep = np.all((moved > -grow) & (moved < 1 + grow), axis=1)
        positions.append(moved[keep] @ cell)
        owners.append(np.flatnonzero(keep))
    return np.concatenate(positions), np.concatenate(owners)


def test_one_row_per_image_keeps_each_atom_once_per_image_along_other_axes():
    atoms = _rattled_fcc_cell(TILTED)
    cell = np.asarray(atoms.cell)
    positions, owners = _images(atoms, 5.0, axes=(0, 1, 2))
    ids = owners + 1
    shuffled = np.r_[np.arange(len(atoms)),
                     len(atoms) + np.random.default_rng(1).permutation(len(ids) - len(atoms))]
    positions, ids = positions[shuffled], ids[shuffled]
    assert len(ids) > 2 * len(atoms)
    # no whole axis: every row stays
    np.testing.assert_array_equal(one_row_per_image(ids, positions, cell, (False,) * 3),
                                  np.arange(len(ids)))
    for whole in ((False, True, True), (True, False, False), (True, True, True)):
        kept = one_row_per_image(ids, positions, cell, whole)
        assert np.all(np.diff(kept) > 0)
        np.testing.assert_array_equal(kept[:len(atoms)], np.arange(len(atoms)))  # owned stay
        # what is left: one row per atom and image along the axes that are not whole
        offset = np.rint(np.linalg.solve(cell.T, (positions - atoms.positions[ids - 1]).T).T)
        expected = {(i, *np.where(whole, 0, o).astype(int)) for i, o in zip(ids, offset)}
        kept_keys = [(i, *np.where(whole, 0, o).astype(int))
                     for i, o in zip(ids[kept], offset[kept])]
        assert len(kept_keys) == len(set(kept_keys)) == len(expected)
        assert set(kept_keys) == expected
    assert len(one_row_per_image(ids, positions, cell, (True,) * 3)) == len(atoms)


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    spec = ModelSpec(phases=PHASES, backbone={"channels": 8, "correlation": 2, "max_ell": 2,
                                              "num_interactions": 2, "r_max": 4.6},
                     decoder={"shape_invariants": True})
    return PhaseModel(build_network(spec), PHASES)


@pytest.mark.parametrize("cell", [np.eye(3) * 10.8, TILTED], ids=["orthogonal", "triclinic"])
def test_periodic_along_whole_axes_gives_the_periodic_answers(small_model, cell):
    """Ghosts only across x, periodic along y and z (what a rank of a 2 x 1 x 1 grid keeps)
    give each atom the answers of the whole periodic cell: labels, logits, denoising."""
    atoms = _rattled_fcc_cell(cell)
    whole = small_model.classify_atoms(atoms, denoise_steps=2)
    scale = PhaseModel.length_scale(atomic_volume=atoms.get_volume() / len(atoms))
    positions, owners = _images(atoms, small_model.receptive_field(0.9 * scale, 2), axes=(0,))
    assert len(positions) > 1.5 * len(atoms)
    sub = small_model.classify_subdomain(
        positions, len(atoms), None, ImageHalo(owners), denoise_steps=2,
        typical_distance=equivalent_nn_distance(atoms.get_volume() / len(atoms)),
        cell=np.asarray(atoms.cell), pbc=(False, True, True))
    np.testing.assert_array_equal(sub.labels, whole.labels)
    np.testing.assert_allclose(sub.logits, whole.logits, atol=1e-4)
    np.testing.assert_allclose(sub.length_scale, whole.length_scale, rtol=1e-6)
    np.testing.assert_allclose(sub.displacement, whole.displacement, atol=1e-6)
    assert np.abs(whole.displacement).max() > 1e-4  # the untrained net moves atoms a little


class _FakeLammps:
    def __init__(self, triclinic, sublo, subhi, boxlo=(0.0, 0.0, 0.0), boxhi=(10.0,) * 3):
        self.values = {"triclinic": int(triclinic), "boxlo": list(boxlo), "boxhi": list(boxhi)}
        prefix = "_lambda" if triclinic else ""
        self.values["sublo" + prefix], self.values["subhi" + prefix] = list(sublo), list(subhi)

    def extract_global(self, name):
        return self.values.get(name)


def test_whole_axes_are_the_periodic_axes_a_subdomain_spans():
    lmp = _FakeLammps(False, (0.0, 0.0, 0.0), (5.0, 10.0, 10.0))
    assert whole_axes(lmp, (True, True, True)) == (False, True, True)
    assert whole_axes(lmp, (True, True, False)) == (False, True, False)  # not periodic: open
    lmp = _FakeLammps(True, (0.0, 0.0, 0.5), (1.0, 1.0, 1.0))
    assert whole_axes(lmp, (True, True, True)) == (True, True, False)


def test_chunks_refuse_periodic_axes(small_model):
    atoms = _rattled_fcc_cell(np.eye(3) * 10.8)
    with pytest.raises(ValueError, match="max_atoms_per_chunk=100 cuts"):
        small_model.classify_subdomain(atoms.positions, len(atoms), 1.0,
                                       ImageHalo(np.arange(len(atoms))),
                                       max_atoms_per_chunk=100, cell=np.asarray(atoms.cell),
                                       pbc=(True, True, False))
