"""Tests of the elemental prototype library."""

import dataclasses
import itertools

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from lpfm_insitu.training.prototypes import (
    PROTOTYPE_LABELS,
    PROTOTYPES,
    Prototype,
    build_prototype,
    check_spacegroup,
    nearest_neighbour_distance,
    pearson_atom_count,
)

REQUIRED = [
    "A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c", "A_cF8_227_a", "A_hP3_191_ad",
    "A_hP4_194_f", "A_cP1_221_a", "A_hP4_194_ac", "A_tI4_141_a", "A_oC4_63_c",
    "A_cP8_223_ac", "A_hR3_166_ac", "A_tI2_139_a", "A_hR2_166_c", "A_hP1_191_a",
    "A_cI16_206_c", "A_tP12_96_ab", "A_cI58_217_ac2g", "A_cP20_213_cd", "A_hP4_194_bc",
    "A_oC8_64_f", "A_hR1_166_a", "A_hP3_152_a",
]


def test_library_size_and_required_labels():
    assert len(PROTOTYPE_LABELS) >= 24
    assert len(set(PROTOTYPE_LABELS)) == len(PROTOTYPE_LABELS)
    assert set(PROTOTYPES) == set(PROTOTYPE_LABELS)
    missing = [label for label in REQUIRED if label not in PROTOTYPES]
    assert not missing


def test_class_order_starts_with_fcc_bcc_hcp():
    assert PROTOTYPE_LABELS[:3] == ("A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c")


def test_prototype_is_frozen_and_consistent():
    proto = PROTOTYPES["A_cF4_225_a"]
    assert isinstance(proto, Prototype)
    assert proto.name.startswith("fcc")
    with pytest.raises(dataclasses.FrozenInstanceError):
        proto.spacegroup = 1
    for label, proto in PROTOTYPES.items():
        assert proto.label == label
        assert int(label.split("_")[2]) == proto.spacegroup


@pytest.mark.parametrize("label", PROTOTYPE_LABELS)
def test_spacegroup_matches_declared(label):
    assert check_spacegroup(label) == PROTOTYPES[label].spacegroup


@pytest.mark.parametrize("label", PROTOTYPE_LABELS)
def test_atom_count_matches_pearson_symbol(label):
    conventional = build_prototype(label, primitive=False)
    primitive = build_prototype(label)
    expected = pearson_atom_count(label)
    if PROTOTYPES[label].pearson_symbol.startswith("hR"):
        # Rhombohedral Pearson symbols count the primitive cell; ASE's
        # conventional cell uses hexagonal axes (three lattice points).
        assert len(conventional) == 3 * expected
        assert len(primitive) == expected
    else:
        assert len(conventional) == expected
    assert len(conventional) % len(primitive) == 0


@pytest.mark.parametrize("label", PROTOTYPE_LABELS)
@pytest.mark.parametrize("volume", [15.0, 11.3])
def test_volume_per_atom(label, volume):
    for primitive in (True, False):
        atoms = build_prototype(label, atomic_volume=volume, primitive=primitive)
        assert atoms.get_volume() / len(atoms) == pytest.approx(volume, rel=1e-9)
        assert atoms.pbc.all()
        assert set(atoms.get_chemical_symbols()) == {"Cu"}


def test_no_atoms_unphysically_close():
    nn = {label: nearest_neighbour_distance(build_prototype(label)) for label in PROTOTYPE_LABELS}
    median = np.median(list(nn.values()))
    for label, distance in nn.items():
        assert distance > 0.6 * median, label
        # Within one structure, no atom may sit much closer than the typical bond.
        atoms = build_prototype(label)
        i, d = neighbor_list("id", atoms, 2.0 * distance)
        per_atom = np.array([d[i == k].min() for k in range(len(atoms))])
        assert per_atom.min() > 0.6 * np.median(per_atom), label


def _radial_fingerprint(label, n_neighbours=40):
    """Mean over atoms of each atom's sorted distances to its first neighbours (Å, 15 Å^3/atom)."""
    atoms = build_prototype(label, atomic_volume=15.0)
    i, d = neighbor_list("id", atoms, 7.0)
    return np.mean([np.sort(d[i == k])[:n_neighbours] for k in range(len(atoms))], axis=0)


def test_no_two_prototypes_are_the_same_structure():
    # At equal density, two genuinely different structures differ somewhere in
    # their first ~40 neighbour distances; a rhombohedral cell that collapsed to
    # sc/fcc, or a polytype identical to another, would not.  The closest real
    # pair (dhcp vs Sm-type) differs by ~0.15 Å.
    fingerprints = {label: _radial_fingerprint(label) for label in PROTOTYPE_LABELS}
    for a, b in itertools.combinations(PROTOTYPE_LABELS, 2):
        difference = np.abs(fingerprints[a] - fingerprints[b]).max()
        assert difference > 0.05, f"{a} and {b} look like the same structure"


def test_unknown_label_raises_keyerror_listing_valid_labels():
    with pytest.raises(KeyError) as info:
        build_prototype("A_cF4_999_z")
    message = str(info.value)
    assert "A_cF4_999_z" in message
    for label in PROTOTYPE_LABELS:
        assert label in message


def test_nearest_neighbour_distance_analytic():
    volume = 15.0
    fcc_a = (4 * volume) ** (1 / 3)
    bcc_a = (2 * volume) ** (1 / 3)
    for primitive in (True, False):
        fcc = build_prototype("A_cF4_225_a", volume, primitive)
        bcc = build_prototype("A_cI2_229_a", volume, primitive)
        assert nearest_neighbour_distance(fcc) == pytest.approx(fcc_a / np.sqrt(2))
        assert nearest_neighbour_distance(bcc) == pytest.approx(bcc_a * np.sqrt(3) / 2)
    sc = build_prototype("A_cP1_221_a", volume)
    assert nearest_neighbour_distance(sc) == pytest.approx(volume ** (1 / 3))
    # Supercells and single cells agree (periodic images are seen in both).
    assert nearest_neighbour_distance(sc.repeat(3)) == pytest.approx(volume ** (1 / 3))


def test_build_is_deterministic_and_independent():
    a = build_prototype("A_cI58_217_ac2g")
    b = build_prototype("A_cI58_217_ac2g")
    np.testing.assert_allclose(a.positions, b.positions)
    a.positions += 1.0  # callers may mutate what they get
    c = build_prototype("A_cI58_217_ac2g")
    np.testing.assert_allclose(c.positions, b.positions)


def test_real_element_geometry_is_recognisable():
    # Coordination numbers at the first-neighbour shell identify the bonding type
    # (guards against wrong Wyckoff settings that still keep the space group).
    expected_cn = {
        "A_cF4_225_a": 12, "A_cI2_229_a": 8, "A_cF8_227_a": 4, "A_hP4_194_f": 4,
        "A_cP1_221_a": 6, "A_cI16_206_c": 4, "A_tP12_96_ab": 4, "A_hR2_166_c": 3,
        "A_hP4_194_bc": 3, "A_hP3_152_a": 2, "A_hR1_166_a": 6,
    }
    for label, cn in expected_cn.items():
        atoms = build_prototype(label)
        i, d = neighbor_list("id", atoms, 1.08 * nearest_neighbour_distance(atoms))
        counts = np.bincount(i, minlength=len(atoms))
        assert set(counts) == {cn}, (label, set(counts))
