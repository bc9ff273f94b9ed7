"""Common phase names ("fcc", "hcp", "beta-Sn") are accepted wherever a phase is named."""

import numpy as np
import pytest

from lpfm_insitu.errors import LPFMError, PhaseNameError
from lpfm_insitu.training.prototypes import (COMMON_NAMES, PROTOTYPE_LABELS, common_name, display_names,
                                    resolve_phase, resolve_phases)
from lpfm_insitu.tracking.triggers import parse_rules


@pytest.fixture(scope="module")
def tiny_model_loaded(tmp_path_factory):
    import sys

    from conftest import MPI_SCRIPTS

    sys.path.insert(0, str(MPI_SCRIPTS))
    from insitu_common import make_tiny_model

    from lpfm_insitu.model.files import load_model

    return load_model(make_tiny_model(tmp_path_factory.mktemp("m") / "tiny.safetensors"))


def test_every_prototype_has_a_distinct_common_name():
    assert set(COMMON_NAMES) == set(PROTOTYPE_LABELS)
    names = [n.lower() for n in COMMON_NAMES.values()]
    assert len(set(names)) == len(names)
    assert common_name("A_cF4_225_a") == "fcc"
    assert display_names(["A_hP2_194_c", "A_hP3_191_ad", "unknown", "X"]) == [
        "hcp", "omega", "unknown", "X"]


@pytest.mark.parametrize("name, label", [
    ("fcc", "A_cF4_225_a"), ("FCC", "A_cF4_225_a"), ("bcc", "A_cI2_229_a"),
    ("hcp", "A_hP2_194_c"), ("omega", "A_hP3_191_ad"), ("diamond", "A_cF8_227_a"),
    ("dhcp", "A_hP4_194_ac"), ("sc", "A_cP1_221_a"), ("beta-Sn", "A_tI4_141_a"),
    ("beta_sn", "A_tI4_141_a"), ("alpha-U", "A_oC4_63_c"), ("alpha-Mn", "A_cI58_217_ac2g"),
    ("beta-Mn", "A_cP20_213_cd"), ("A15", "A_cP8_223_ac"), ("beta-W", "A_cP8_223_ac"),
    ("alpha-Hg", "A_hR1_166_a"), ("bct", "A_tI2_139_a"), ("In", "A_tI2_139_a"),
    ("alpha-As", "A_hR2_166_c"), ("A_hP2_194_c", "A_hP2_194_c"), ("a_hp2_194_c", "A_hP2_194_c"),
])
def test_names_resolve_case_insensitively(name, label):
    assert resolve_phase(name) == label


def test_every_alias_of_every_prototype_resolves_to_it():
    for label in PROTOTYPE_LABELS:
        assert resolve_phase(label) == label
        assert resolve_phase(common_name(label).upper()) == label


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(PhaseNameError) as err:
        resolve_phase("fcc2")
    msg = str(err.value)
    assert "'fcc2'" in msg and "fcc (A_cF4_225_a)" in msg and "beta-Sn (A_tI4_141_a)" in msg
    assert isinstance(err.value, LPFMError) and isinstance(err.value, ValueError)


def test_a_phase_outside_the_model_is_refused_with_the_models_names():
    with pytest.raises(PhaseNameError, match=r"'bcc' \(A_cI2_229_a\) is not a phase of this "
                                             r"model; valid names: fcc \(A_cF4_225_a\)"):
        resolve_phases(["bcc"], ["A_cF4_225_a", "A_hP2_194_c"])
    assert resolve_phases("hcp, fcc", ["A_cF4_225_a", "A_hP2_194_c"]) == [
        "A_hP2_194_c", "A_cF4_225_a"]


def test_custom_labels_of_a_model_still_match():
    assert resolve_phases(["B", "a"], ["A", "B"]) == ["B", "A"]


def test_trigger_rules_take_common_names():
    phases = ("A_cI2_229_a", "A_hP2_194_c", "A_hP3_191_ad")
    rules = parse_rules("appear:hcp>0.05, change:BCC>0.1, appear:unknown>0.3", phases)
    assert [r.phase for r in rules] == ["A_hP2_194_c", "A_cI2_229_a", "unknown"]
    with pytest.raises(ValueError, match=r"did you mean 'hcp'\?"):
        parse_rules("appear:hpc>0.05", phases)


def test_classify_atoms_candidates_take_common_names(tiny_model_loaded):
    from lpfm_insitu.training.prototypes import build_prototype

    model = tiny_model_loaded
    atoms = build_prototype("A_hP2_194_c").repeat((3, 3, 2))
    by_name = model.classify_atoms(atoms, candidates=["fcc", "HCP"])
    by_label = model.classify_atoms(atoms, candidates=["A_cF4_225_a", "A_hP2_194_c"])
    np.testing.assert_array_equal(by_name.labels, by_label.labels)
    assert set(np.unique(by_name.labels)) <= {-1, 0, 2}
    with pytest.raises(PhaseNameError):
        model.classify_atoms(atoms, candidates=["fcc", "hpc"])
