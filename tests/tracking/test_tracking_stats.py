"""Global phase statistics, spatial profiles and LAMMPS variable export (serial)."""

import re

import numpy as np
import pytest

from lpfm_insitu.constants import UNKNOWN_PHASE
from lpfm_insitu.lammps.tracking import as_lammps_variables
from lpfm_insitu.tracking.statistics import (
    PhaseStatistics,
    reduce_phase_statistics,
    spatial_profile,
)

PHASES = ("A_cI2_229_a", "A_hP2_194_c", "A_hP3_191_ad", "A_cF4_225_a")


def _random_data(n, n_phases=len(PHASES), seed=0, absent=None):
    rng = np.random.default_rng(seed)
    labels = rng.integers(-1, n_phases, size=n)
    if absent is not None:
        labels[labels == absent] = UNKNOWN_PHASE
    return labels, rng.uniform(0.5, 6.0, size=n), rng.normal(size=(n, n_phases))


def test_fractions_equal_direct_count_and_sum_to_one():
    labels, conf, ops = _random_data(997, absent=3)
    st = reduce_phase_statistics(labels, conf, ops, PHASES)
    direct = np.array([np.sum(labels == i) for i in range(len(PHASES))] + [np.sum(labels == -1)])
    assert st.n_atoms == 997
    np.testing.assert_array_equal(st.counts, direct)
    assert st.fractions.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(st.fractions, direct / 997)
    assert st.fraction("unknown") == pytest.approx(direct[-1] / 997)
    assert st.mean_confidence == pytest.approx(conf.mean())


def test_means_per_phase_use_own_logit_and_nan_when_absent():
    labels, conf, ops = _random_data(500, seed=1, absent=3)
    st = reduce_phase_statistics(labels, conf, ops, PHASES)
    for i in range(3):
        sel = labels == i
        assert st.mean_op[i] == pytest.approx(ops[sel, i].mean())
        assert st.mean_confidence_per_phase[i] == pytest.approx(conf[sel].mean())
    assert np.isnan(st.mean_op[3]) and np.isnan(st.mean_confidence_per_phase[3])
    assert st.mean_confidence_per_phase[-1] == pytest.approx(conf[labels == -1].mean())


def test_zero_atoms():
    st = reduce_phase_statistics(np.zeros(0, int), np.zeros(0), np.zeros((0, 4)), PHASES)
    assert st.n_atoms == 0
    np.testing.assert_array_equal(st.fractions, np.zeros(5))
    assert np.isnan(st.mean_confidence)
    assert np.all(np.isnan(st.mean_op))
    # also accepts flat empty ops
    st2 = reduce_phase_statistics([], [], [], PHASES)
    assert st2.n_atoms == 0
    assert as_lammps_variables(st)["lpfm_conf_mean"] == 0.0


@pytest.mark.parametrize("bad", [4, -2, 100])
def test_labels_out_of_range_raise(bad):
    labels, conf, ops = _random_data(10)
    labels[3] = bad
    with pytest.raises(ValueError, match="labels must be in"):
        reduce_phase_statistics(labels, conf, ops, PHASES)


def test_shape_mismatch_raises():
    labels, conf, ops = _random_data(10)
    with pytest.raises(ValueError, match="ops must have shape"):
        reduce_phase_statistics(labels, conf, ops[:, :3], PHASES)
    with pytest.raises(ValueError, match="confidence has"):
        reduce_phase_statistics(labels, conf[:5], ops, PHASES)


def test_spatial_profile_matches_histogram_and_clips():
    rng = np.random.default_rng(3)
    n, n_bins, lo, hi = 3000, 7, 0.0, 70.0
    labels = rng.integers(-1, 4, size=n)
    x = rng.uniform(-10.0, 80.0, size=n)  # some atoms outside [lo, hi)
    frac, counts = spatial_profile(labels, x, 4, lo, hi, n_bins, return_counts=True)
    assert frac.shape == counts.shape == (n_bins, 5)
    assert counts.sum() == n  # nobody dropped
    b = np.clip(np.floor((x - lo) / (hi - lo) * n_bins).astype(int), 0, n_bins - 1)
    col = np.where(labels < 0, 4, labels)
    direct = np.zeros((n_bins, 5), int)
    np.add.at(direct, (b, col), 1)
    np.testing.assert_array_equal(counts, direct)
    np.testing.assert_allclose(frac.sum(axis=1), 1.0)
    np.testing.assert_allclose(frac, direct / direct.sum(axis=1, keepdims=True))
    assert np.array_equal(spatial_profile(labels, x, 4, lo, hi, n_bins), frac)


def test_spatial_profile_empty_bins_are_zero():
    frac = spatial_profile([0, 1], [0.5, 0.6], 2, 0.0, 10.0, 5)
    np.testing.assert_allclose(frac[0], [0.5, 0.5, 0.0])
    np.testing.assert_array_equal(frac[1:], 0.0)
    with pytest.raises(ValueError):
        spatial_profile([0], [0.0], 2, 1.0, 1.0, 5)


def test_lammps_variables_are_valid_names():
    phases = ("A_hP2_194_c", "bcc-Fe (α)", "B2.CsCl")
    st = reduce_phase_statistics([0, 1, 1, 2, -1], np.ones(5), np.zeros((5, 3)), phases)
    var = as_lammps_variables(st)
    for name in var:
        assert re.fullmatch(r"[A-Za-z0-9_]+", name), name
    assert var["lpfm_frac_A_hP2_194_c"] == pytest.approx(0.2)
    assert var["lpfm_frac_bcc_Fe____"] == pytest.approx(0.4)
    assert var["lpfm_frac_unknown"] == pytest.approx(0.2)
    assert var["lpfm_conf_mean"] == pytest.approx(1.0)
    assert sum(v for k, v in var.items() if k.startswith("lpfm_frac_")) == pytest.approx(1.0)


def test_lammps_variable_name_clash_raises():
    st = reduce_phase_statistics([0, 1], np.ones(2), np.zeros((2, 2)), ("a-b", "a.b"))
    with pytest.raises(ValueError, match="lpfm_frac_a_b"):
        as_lammps_variables(st)


def test_statistics_validate_shapes():
    with pytest.raises(ValueError):
        PhaseStatistics(("a", "b"), counts=[1, 2], n_atoms=3, mean_confidence=1.0, mean_op=[0, 0])
