"""Tests of the synthetic training-data generator."""

import numpy as np
import pytest

from lpfm_insitu.training.prototypes import PROTOTYPE_LABELS, build_prototype, nearest_neighbour_distance
from lpfm_insitu.training.synthetic import (
    Sample,
    SyntheticSampler,
    add_noise,
    apply_strain,
    ideal_supercell,
    make_supercell,
    random_strain,
    lattice_directions,
)


@pytest.mark.parametrize("label", PROTOTYPE_LABELS)
def test_ideal_supercell_size_and_shape(label):
    atoms = ideal_supercell(label, atomic_volume=15.0, target_atoms=200)
    assert 100 <= len(atoms) <= 300
    lengths = atoms.cell.lengths()
    assert lengths.max() / lengths.min() < 2.0
    assert atoms.get_volume() / len(atoms) == pytest.approx(15.0)
    assert atoms.pbc.all()


@pytest.mark.parametrize("primitive", [True, False])
@pytest.mark.parametrize("label", ["A_cF4_225_a", "A_hP2_194_c", "A_cP20_213_cd", "A_oC8_64_f"])
def test_make_supercell_from_any_cell(label, primitive):
    unit = build_prototype(label, primitive=primitive)
    atoms = make_supercell(unit, target_atoms=200)
    assert 100 <= len(atoms) <= 300
    assert len(atoms) % len(unit) == 0
    lengths = atoms.cell.lengths()
    assert lengths.max() / lengths.min() < 2.0
    assert atoms.get_volume() / len(atoms) == pytest.approx(unit.get_volume() / len(unit))


def test_ideal_supercell_returns_independent_copies():
    a = ideal_supercell("A_cF4_225_a")
    a.positions += 1.0
    b = ideal_supercell("A_cF4_225_a")
    assert not np.allclose(a.positions, b.positions)


def test_strain_is_symmetric():
    rng = np.random.default_rng(0)
    for _ in range(200):
        F = random_strain(rng)
        assert F.shape == (3, 3)
        np.testing.assert_allclose(F, F.T, atol=1e-14)


def test_strain_scale_distribution():
    rng = np.random.default_rng(1)
    scales = []
    for _ in range(4000):
        F = random_strain(rng, scale_range=(0.9, 1.08), shear_std=0.0, p_uniaxial=0.0)
        s = F[0, 0]
        np.testing.assert_allclose(F, s * np.eye(3), atol=1e-14)
        scales.append(s)
    scales = np.array(scales)
    assert scales.min() >= 0.9 and scales.max() <= 1.08
    assert scales.mean() == pytest.approx(0.99, abs=0.004)
    assert scales.std() == pytest.approx(0.18 / np.sqrt(12), rel=0.05)  # uniform distribution


def test_shear_component_statistics():
    rng = np.random.default_rng(2)
    Fs = np.array([random_strain(rng, scale_range=(1, 1), shear_std=0.03, p_uniaxial=0.0)
                   for _ in range(4000)])
    strain = Fs - np.eye(3)
    assert np.abs(strain.mean(axis=0)).max() < 0.003
    assert strain[:, 0, 0].std() == pytest.approx(0.03, rel=0.08)
    # Off-diagonal entries are averages of two independent N(0, 0.03) draws.
    assert strain[:, 0, 1].std() == pytest.approx(0.03 / np.sqrt(2), rel=0.08)


def test_uniaxial_component_keeps_two_axes_and_compresses_one():
    rng = np.random.default_rng(3)
    stretch = []
    for _ in range(500):
        F = random_strain(rng, scale_range=(1, 1), shear_std=0.0, p_uniaxial=1.0)
        eigenvalues = np.sort(np.linalg.eigvalsh(F))
        unit = np.isclose(eigenvalues, 1.0)
        assert unit.sum() >= 2
        stretch.append(eigenvalues[~unit][0] if (~unit).any() else 1.0)
    stretch = np.array(stretch)
    assert stretch.min() >= 0.85 - 1e-12 and stretch.max() <= 1.05 + 1e-12
    assert stretch.min() < 0.87  # shock-level compression does occur


def test_lattice_directions_of_a_cubic_cell_are_100_110_111():
    directions = lattice_directions(np.eye(3) * 7.0)
    unit = directions / np.linalg.norm(directions, axis=1)[:, None]
    families = sorted(np.round(np.sort(np.abs(u))[::-1] * np.sqrt((u != 0).sum()), 6).tolist()
                      for u in unit)
    assert families.count([1.0, 0.0, 0.0]) == 3
    assert families.count([1.0, 1.0, 0.0]) == 6
    assert families.count([1.0, 1.0, 1.0]) == 4


def test_lattice_axis_compression_runs_along_a_lattice_direction():
    sampler = SyntheticSampler(["A_cF4_225_a", "A_hP2_194_c"], target_atoms=100,
                               scale_range=(1, 1), shear_std=0.0, p_uniaxial=1.0,
                               p_lattice_axis=1.0, seed=7)
    for _ in range(40):
        sample = sampler.sample_one()
        ideal = sampler.ideal(sample.label)
        F = np.linalg.solve(ideal.cell[:], sample.atoms.cell[:]).T
        values, vectors = np.linalg.eigh(F)
        axis = vectors[:, np.argmin(values)]
        if np.isclose(values.min(), 1.0):
            continue  # u drawn at 0
        directions = lattice_directions(ideal.cell)
        directions /= np.linalg.norm(directions, axis=1)[:, None]
        assert np.max(np.abs(directions @ axis)) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_lattice_axis_probability_is_checked(bad):
    with pytest.raises(ValueError, match=f"p_lattice_axis must be a probability in \\[0, 1\\], "
                                         f"got {bad}"):
        SyntheticSampler(["A_cF4_225_a"], p_lattice_axis=bad)


def test_uniaxial_probability():
    rng = np.random.default_rng(4)
    n = 3000
    hits = sum(
        not np.allclose(random_strain(rng, scale_range=(1, 1), shear_std=0.0), np.eye(3))
        for _ in range(n)
    )
    assert hits / n == pytest.approx(0.3, abs=0.03)


def test_apply_strain_maps_cell_and_positions():
    atoms = ideal_supercell("A_hP2_194_c")
    rng = np.random.default_rng(5)
    F = random_strain(rng, p_uniaxial=1.0)
    strained = apply_strain(atoms, F)
    np.testing.assert_allclose(strained.cell[:], atoms.cell[:] @ F.T)
    assert strained.get_volume() == pytest.approx(atoms.get_volume() * np.linalg.det(F))
    # Same fractional coordinates (mod lattice translations), wrapped into the cell.
    delta = strained.get_scaled_positions(wrap=False) - atoms.get_scaled_positions()
    np.testing.assert_allclose(delta, np.round(delta), atol=1e-9)
    frac = strained.get_scaled_positions(wrap=False)
    assert frac.min() >= -1e-9 and frac.max() < 1.0 + 1e-9
    assert atoms is not strained
    np.testing.assert_allclose(atoms.cell[:], ideal_supercell("A_hP2_194_c").cell[:])


def test_noise_standard_deviation():
    rng = np.random.default_rng(6)
    positions = rng.uniform(0, 10, size=(20000, 3))
    sigma = 0.2
    noisy, eps = add_noise(positions, sigma, rng)
    displacement = noisy - positions
    np.testing.assert_allclose(displacement, sigma * eps, atol=1e-12)
    assert displacement.std() == pytest.approx(sigma, rel=0.02)
    assert abs(displacement.mean()) < 0.005
    assert eps.std() == pytest.approx(1.0, rel=0.02)
    noisy0, _ = add_noise(positions, 0.0, rng)
    np.testing.assert_array_equal(noisy0, positions)


def test_default_sigma_max_is_fraction_of_fcc_nn():
    sampler = SyntheticSampler(labels=["A_cF4_225_a"], seed=0)
    fcc_nn = nearest_neighbour_distance(build_prototype("A_cF4_225_a", 15.0))
    assert sampler.sigma_max == pytest.approx(0.13 * fcc_nn)
    assert sampler.sigma_max == pytest.approx(0.36, abs=0.01)
    assert SyntheticSampler(sigma_max=0.1).sigma_max == 0.1


def _signature(samples):
    return [(s.label_index[0], s.sigma, s.atoms.positions.copy()) for s in samples]


def test_sampler_is_deterministic_per_seed():
    a = _signature(SyntheticSampler(seed=11).sample(6))
    b = _signature(SyntheticSampler(seed=11).sample(6))
    c = _signature(SyntheticSampler(seed=12).sample(6))
    for (la, sa, pa), (lb, sb, pb) in zip(a, b):
        assert la == lb and sa == sb
        np.testing.assert_array_equal(pa, pb)
    assert any(
        la != lc or sa != sc or pa.shape != pc.shape or not np.allclose(pa, pc)
        for (la, sa, pa), (lc, sc, pc) in zip(a, c)
    )


def test_sample_contents_and_label_indices():
    subset = ["A_cI58_217_ac2g", "A_hP2_194_c", "A_hR1_166_a"]
    sampler = SyntheticSampler(labels=subset, seed=3)
    samples = sampler.sample(12)
    assert len(samples) == 12
    for sample in samples:
        assert isinstance(sample, Sample)
        atoms = sample.atoms
        assert atoms.pbc.all()
        assert sample.label in subset
        index = PROTOTYPE_LABELS.index(sample.label)
        assert sample.label_index.shape == (len(atoms),)
        assert np.all(sample.label_index == index)  # global index, not into the subset
        assert 0.0 <= sample.sigma <= sampler.sigma_max
        assert sample.clean_positions.shape == atoms.positions.shape
        np.testing.assert_allclose(atoms.positions - sample.clean_positions,
                                   sample.sigma * sample.eps, atol=1e-12)


def test_clean_positions_are_the_strained_ideal_supercell():
    sampler = SyntheticSampler(seed=5)
    for sample in sampler.sample(8):
        ideal = sampler.ideal(sample.label)
        # Recover F from the cells: strained_cell = ideal_cell @ F.T.
        F = np.linalg.solve(ideal.cell[:], sample.atoms.cell[:]).T
        np.testing.assert_allclose(F, F.T, atol=1e-10)
        expected = apply_strain(ideal, F).positions
        np.testing.assert_allclose(sample.clean_positions, expected, atol=1e-8)


def test_sampler_is_class_balanced():
    subset = ["A_cF4_225_a", "A_cI2_229_a", "A_cP1_221_a"]
    sampler = SyntheticSampler(labels=subset, seed=7)
    counts = np.zeros(len(PROTOTYPE_LABELS), dtype=int)
    for sample in sampler.sample(900):
        counts[sample.label_index[0]] += 1
    picked = counts[[PROTOTYPE_LABELS.index(label) for label in subset]]
    assert picked.sum() == 900
    assert np.all(np.abs(picked - 300) < 60)  # ~3.5 binomial standard deviations


def test_phase_weights_draw_the_named_prototypes_more_often():
    subset = ["A_cF4_225_a", "A_cI2_229_a", "A_cP1_221_a"]
    sampler = SyntheticSampler(labels=subset, target_atoms=20, seed=7,
                               phase_weights={"A_cF4_225_a": 3.0})
    drawn = [sampler.sample_one().label for _ in range(1000)]
    # expected 600 / 200 / 200 (weights 3 : 1 : 1); ~5 binomial standard deviations of slack
    assert abs(drawn.count("A_cF4_225_a") - 600) < 80
    assert abs(drawn.count("A_cI2_229_a") - 200) < 65


def test_unweighted_sampler_keeps_the_uniform_random_stream():
    """Runs made before phase_weights existed resume with the very same batches."""
    subset = ["A_cF4_225_a", "A_cI2_229_a", "A_cP1_221_a"]
    sampler = SyntheticSampler(labels=subset, target_atoms=20, sigma_max=0.0, seed=11)
    first = sampler.sample_one().label
    assert first == subset[np.random.default_rng(11).integers(3)]


def test_low_noise_fraction_draws_that_share_of_nearly_clean_structures():
    sampler = SyntheticSampler(["A_cF4_225_a"], target_atoms=20, sigma_max=0.36,
                               low_noise_fraction=0.5, low_noise_sigma_max=0.06, seed=3)
    sigmas = np.array([sampler.sample_one().sigma for _ in range(800)])
    # half from U(0, 0.06), half from U(0, 0.36): P(sigma < 0.06) = 0.5 + 0.5 / 6
    assert np.mean(sigmas < 0.06) == pytest.approx(0.5 + 0.5 / 6, abs=0.06)
    assert sigmas.max() > 0.3
    plain = SyntheticSampler(["A_cF4_225_a"], target_atoms=20, sigma_max=0.36, seed=3)
    assert np.mean([plain.sample_one().sigma < 0.06 for _ in range(800)]) < 0.25


def test_low_noise_settings_are_checked_and_off_keeps_the_random_stream():
    with pytest.raises(ValueError, match="low_noise_fraction must be a probability.*got 2"):
        SyntheticSampler(["A_cF4_225_a"], low_noise_fraction=2)
    with pytest.raises(ValueError, match="low_noise_sigma_max must be in .*got 0.5"):
        SyntheticSampler(["A_cF4_225_a"], sigma_max=0.3, low_noise_fraction=0.2,
                         low_noise_sigma_max=0.5)
    a = SyntheticSampler(["A_cF4_225_a"], target_atoms=20, seed=5).sample_one()
    b = SyntheticSampler(["A_cF4_225_a"], target_atoms=20, seed=5,
                         low_noise_fraction=0.0).sample_one()
    assert a.sigma == b.sigma and np.array_equal(a.atoms.positions, b.atoms.positions)


@pytest.mark.parametrize("weights, error, match", [
    ({"A_cF4_225_a": 0.0}, ValueError, "A_cF4_225_a.*positive"),
    ({"A_cF4_225_a": float("nan")}, ValueError, "positive"),
    ({"A_cF4_225_a": -2}, ValueError, "-2"),
    ({"A_hP2_194_c": 2}, KeyError, "A_hP2_194_c.*not among"),
    ({"A_cF4_225_a": "3"}, ValueError, r"A_cF4_225_a.*'3'.*positive number"),  # quoted in YAML
    ({"A_cF4_225_a": True}, ValueError, "positive number"),
])
def test_bad_phase_weights_are_refused(weights, error, match):
    with pytest.raises(error, match=match):
        SyntheticSampler(labels=["A_cF4_225_a", "A_cI2_229_a"], phase_weights=weights)


def test_sampler_rejects_unknown_label():
    with pytest.raises(KeyError):
        SyntheticSampler(labels=["A_zz"])


def test_uniaxial_exempt_prototypes_get_no_uniaxial_strain():
    """bct In stretched or squeezed along c becomes FCC: it is kept out of uniaxial strain."""
    from lpfm_insitu.training.synthetic import SyntheticSampler

    sampler = SyntheticSampler(labels=["A_tI2_139_a", "A_cF4_225_a"], target_atoms=20,
                               shear_std=0.0, scale_range=(1.0, 1.0), p_uniaxial=1.0,
                               uniaxial_range=(-0.15, -0.10), sigma_max=0.0, seed=3,
                               uniaxial_exempt=["A_tI2_139_a"])

    def volume_ratio(label):
        sample = sampler.sample_one(label)
        return sample.atoms.get_volume() / sampler.ideal(label).get_volume()

    assert volume_ratio("A_tI2_139_a") == pytest.approx(1.0)
    assert volume_ratio("A_cF4_225_a") < 0.91  # a 10-15 % uniaxial compression
    with pytest.raises(KeyError, match="A_xx"):
        SyntheticSampler(uniaxial_exempt=["A_xx"])


def test_a_phase_of_its_own_uniaxial_range_is_stretched_where_the_others_are_squeezed():
    from lpfm_insitu.training.synthetic import SyntheticSampler

    sampler = SyntheticSampler(labels=["A_hP3_191_ad", "A_cF4_225_a"], target_atoms=20,
                               shear_std=0.0, scale_range=(1.0, 1.0), p_uniaxial=1.0,
                               uniaxial_range=(-0.15, -0.10), sigma_max=0.0, seed=3,
                               uniaxial_ranges={"A_hP3_191_ad": [0.10, 0.15]})

    def volume_ratio(label):
        sample = sampler.sample_one(label)
        return sample.atoms.get_volume() / sampler.ideal(label).get_volume()

    assert all(1.09 < volume_ratio("A_hP3_191_ad") < 1.16 for _ in range(5))
    assert all(0.84 < volume_ratio("A_cF4_225_a") < 0.91 for _ in range(5))
    with pytest.raises(KeyError, match="uniaxial_ranges.*A_xx"):
        SyntheticSampler(uniaxial_ranges={"A_xx": [0.0, 0.1]})
    with pytest.raises(ValueError, match=r"uniaxial_ranges\['A_hP3_191_ad'\].*lowest"):
        SyntheticSampler(uniaxial_ranges={"A_hP3_191_ad": [0.1, -0.1]})
    with pytest.raises(ValueError, match="give \\[lowest, highest\\]"):
        SyntheticSampler(uniaxial_ranges={"A_hP3_191_ad": 0.1})


def test_narrow_shear_prototypes_get_their_own_shear_width():
    """FCC and bct In keep a narrow shear while the other lattices get a wide one."""
    from lpfm_insitu.training.synthetic import SyntheticSampler

    sampler = SyntheticSampler(labels=["A_cF4_225_a", "A_hP2_194_c"], target_atoms=20,
                               shear_std=0.1, scale_range=(1.0, 1.0), p_uniaxial=0.0,
                               sigma_max=0.0, seed=5, narrow_shear=["A_cF4_225_a"],
                               narrow_shear_std=0.0)

    def strain(label):
        ideal, sample = sampler.ideal(label), sampler.sample_one(label)
        deformation = np.linalg.solve(ideal.cell[:], sample.atoms.cell[:])
        return np.abs(deformation - np.eye(3)).max()

    assert strain("A_cF4_225_a") == pytest.approx(0.0, abs=1e-12)
    assert min(strain("A_hP2_194_c") for _ in range(5)) > 0.01
    with pytest.raises(KeyError, match="narrow_shear.*A_yy"):
        SyntheticSampler(narrow_shear=["A_yy"])


def test_training_config_rejects_unknown_strain_setting(tmp_path):
    from lpfm_insitu.training.trainer import Trainer, TrainingConfig

    config = TrainingConfig(output=str(tmp_path / "m.safetensors"), strain={"shear": 0.1},
                            backbone={"channels": 4, "max_ell": 1, "num_interactions": 1,
                                      "correlation": 1})
    with pytest.raises(ValueError, match="shear"):
        Trainer(config, progress=False)
