"""The model-free neighbour-template match (lpfm_insitu.evaluation.template_match).

Rotated, noisy prototype crystals must match their own template at every atom, omega's two
sites in the 1:2 ratio of the crystal, and an exact crystal must have an RMSD of zero
against its own template whatever its orientation.
"""

from __future__ import annotations

import numpy as np
import pytest

from lpfm_insitu.training.prototypes import build_prototype
from lpfm_insitu.evaluation.template_match import default_templates, match_templates, site_templates

HCP, OMEGA, BCC, FCC = "A_hP2_194_c", "A_hP3_191_ad", "A_cI2_229_a", "A_cF4_225_a"


def _rotated(label: str, noise: float, seed: int):
    atoms = build_prototype(label, atomic_volume=17.6, primitive=False).repeat(3)
    atoms.rotate(37, "x", rotate_cell=True)
    atoms.rotate(-71, "z", rotate_cell=True)
    atoms.rotate(12, "y", rotate_cell=True)
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(0.0, noise, atoms.positions.shape)
    return atoms


def test_site_templates_have_the_prototypes_coordination():
    sizes = {t.name: len(t.vectors) for t in default_templates()}
    assert sizes == {"hcp": 12, "omega-0": 14, "omega-1": 11, "bcc": 14, "fcc": 12}
    (omega_a, omega_d) = site_templates(OMEGA)
    for t in (omega_a, omega_d):
        assert np.linalg.norm(t.vectors, axis=1).mean() == pytest.approx(1.0)


@pytest.mark.parametrize("label, expected", [(HCP, {"hcp": 1.0}), (BCC, {"bcc": 1.0}),
                                             (FCC, {"fcc": 1.0}),
                                             (OMEGA, {"omega-0": 1 / 3, "omega-1": 2 / 3})])
def test_noisy_rotated_crystals_match_their_own_template(label, expected):
    templates = default_templates()
    result = match_templates(_rotated(label, noise=0.1, seed=1), templates)
    names = np.array(result["names"])[result["best"]]
    got = {n: float(np.mean(names == n)) for n in set(names)}
    assert got == pytest.approx(expected)


def test_exact_crystal_has_zero_rmsd_against_its_template_only():
    result = match_templates(_rotated(OMEGA, noise=0.0, seed=0))
    names = result["names"]
    own = result["rmsd"][:, [names.index("omega-0"), names.index("omega-1")]].min(axis=1)
    assert own.max() < 1e-6
    others = result["rmsd"][:, [names.index(n) for n in ("hcp", "bcc", "fcc")]]
    assert others.min() > 0.1
