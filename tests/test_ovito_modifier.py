"""The OVITO modifier gives the answers of ``classify_atoms`` inside an OVITO pipeline."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ovito")

from ase.build import bulk  # noqa: E402
from ovito.io import import_file  # noqa: E402
from ovito.io.ase import ase_to_ovito  # noqa: E402
from ovito.pipeline import Pipeline, StaticSource  # noqa: E402

from lpfm_insitu import load_model  # noqa: E402
from lpfm_insitu.ovito_modifier import LPFMModifier, common_name, modify  # noqa: E402

FCC, BCC, HCP, OMEGA = "A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c", "A_hP3_191_ad"


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def hot_fcc():
    """Cu with thermal-like noise: a few atoms off-lattice enough to make labels non-trivial."""
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(4)
    atoms.rattle(0.12, seed=3)
    return atoms


def pipeline_of(atoms, modifier):
    pipeline = Pipeline(source=StaticSource(data=ase_to_ovito(atoms)))
    pipeline.modifiers.append(modifier)
    return pipeline


def test_labels_confidence_and_ops_equal_classify_atoms(model, hot_fcc):
    data = pipeline_of(hot_fcc, LPFMModifier(ops=["fcc", HCP, "omega"])).compute()
    expected = model.classify_atoms(hot_fcc)

    labels = np.asarray(data.particles["lpfm_phase"])
    np.testing.assert_array_equal(labels, expected.labels)
    assert np.mean(labels == model.phases.index(FCC)) > 0.9
    np.testing.assert_allclose(data.particles["lpfm_conf"], expected.confidence, rtol=1e-6)
    ops = data.particles["lpfm_op"]
    assert ops.component_names == ("fcc", "hcp", "omega")
    columns = [model.phases.index(p) for p in (FCC, HCP, OMEGA)]
    np.testing.assert_allclose(ops, expected.logits[:, columns], rtol=1e-6)
    assert "lpfm_displacement" not in data.particles


def test_candidates_by_common_name_restrict_the_labels(model, hot_fcc):
    data = pipeline_of(hot_fcc, LPFMModifier(candidates=["bcc", "hcp", "omega"])).compute()
    expected = model.classify_atoms(hot_fcc, candidates=[BCC, HCP, OMEGA])
    labels = np.asarray(data.particles["lpfm_phase"])
    np.testing.assert_array_equal(labels, expected.labels)
    allowed = {model.phases.index(p) for p in (BCC, HCP, OMEGA)} | {-1}
    assert set(np.unique(labels)) <= allowed


def test_phase_is_a_typed_property_with_named_coloured_types(model, hot_fcc):
    data = pipeline_of(hot_fcc, LPFMModifier(ops=None, candidates="all")).compute()
    prop = data.particles["lpfm_phase"]
    np.testing.assert_array_equal(prop, model.classify_atoms(hot_fcc).labels)
    names = {t.id: t.name for t in prop.types}
    assert names[-1] == "unknown"
    assert names[model.phases.index(FCC)] == "fcc"
    assert names[model.phases.index(BCC)] == "bcc"
    assert names[model.phases.index(HCP)] == "hcp"
    assert names[model.phases.index(OMEGA)] == "omega"
    assert len(names) == len(model.phases) + 1 and len(set(names.values())) == len(names)
    colours = {tuple(np.round(t.color, 6)) for t in prop.types}
    assert len(colours) == len(names), "every phase must get its own colour"
    assert "lpfm_op" not in data.particles  # ops=None: no order parameters
    assert common_name("A_cI58_217_ac2g") == "alpha-Mn"


def test_denoised_positions_move_the_atoms_by_the_models_displacement(model, hot_fcc):
    steps = 2
    expected = model.classify_atoms(hot_fcc, denoise_steps=steps)
    kept = pipeline_of(hot_fcc, LPFMModifier(denoise_steps=steps, ops=None)).compute()
    moved = pipeline_of(hot_fcc, LPFMModifier(denoise_steps=steps, ops=None,
                                              denoised_positions=True)).compute()

    np.testing.assert_array_equal(kept.particles["lpfm_phase"], expected.labels)
    # two runs of the model: float32 sums over multi-threaded neighbour lists, whose
    # order may differ, agree to ~1e-7 Å per step, and two steps compound it (seen once:
    # 1.2e-6 Å on one coordinate of 768); a wrong displacement is off by ~0.01-0.1 Å
    np.testing.assert_allclose(kept.particles["lpfm_displacement"], expected.displacement,
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose(kept.particles.positions, hot_fcc.positions, atol=1e-9)
    shift = np.asarray(moved.particles.positions) - hot_fcc.positions
    np.testing.assert_allclose(shift, expected.displacement, rtol=0, atol=1e-5)
    assert np.linalg.norm(shift, axis=1).mean() > 0.02  # denoising took the noise out


def test_a_file_imported_by_ovito_gives_the_same_labels(model, hot_fcc, tmp_path):
    path = tmp_path / "cu.xyz"
    hot_fcc.write(path, format="extxyz")
    pipeline = import_file(str(path))
    pipeline.modifiers.append(LPFMModifier())
    data = pipeline.compute()
    np.testing.assert_array_equal(data.particles["lpfm_phase"],
                                  model.classify_atoms(hot_fcc).labels)


def test_function_interface_uses_the_default_model(model, hot_fcc):
    data = ase_to_ovito(hot_fcc)
    modify(0, data)
    np.testing.assert_array_equal(data.particles["lpfm_phase"],
                                  model.classify_atoms(hot_fcc).labels)
    assert data.particles["lpfm_op"].component_names[0] == "fcc"


@pytest.mark.parametrize("options, message", [
    ({"ops": ["fcc", "fccc"]}, "'fccc' is not a phase of this model; its phases are fcc"),
    ({"candidates": ["hcp", "hcp"]}, "names a phase twice"),
    ({"model": "no_such_model"}, "no shipped model named 'no_such_model'"),
    ({"denoise_steps": -1}, "denoise_steps=-1 must be >= 0"),
    ({"nn_distance": -2.5}, "nn_distance=-2.5 must be > 0"),
    ({"denoised_positions": True}, "set denoise_steps >= 1"),
    ({"atomic_volume": -1.0}, "atomic_volume=-1.0 must be > 0"),
    ({"atomic_volume": 11.8, "nn_distance": 2.55}, "give nn_distance or atomic_volume, not both"),
])
def test_bad_option_names_the_problem(hot_fcc, options, message):
    with pytest.raises(Exception, match=message.replace("(", r"\(")):
        pipeline_of(hot_fcc, LPFMModifier(**options)).compute()


def test_open_box_takes_the_local_scale_or_a_fixed_one(model, hot_fcc):
    cluster = hot_fcc.copy()
    cluster.pbc = False
    # no setting: each atom's scale from its neighbourhood, as classify_atoms has it
    local = pipeline_of(cluster, LPFMModifier()).compute()
    np.testing.assert_array_equal(local.particles["lpfm_phase"],
                                  model.classify_atoms(cluster).labels)
    volume = hot_fcc.get_volume() / len(hot_fcc)
    by_volume = pipeline_of(cluster, LPFMModifier(atomic_volume=volume)).compute()
    # nn_distance is the FCC nearest-neighbour distance at the same density: same scale
    by_distance = pipeline_of(cluster, LPFMModifier(nn_distance=3.615 / np.sqrt(2))).compute()
    np.testing.assert_array_equal(by_volume.particles["lpfm_phase"],
                                  by_distance.particles["lpfm_phase"])
    expected = model.classify_atoms(cluster, nn_distance=3.615 / np.sqrt(2))
    np.testing.assert_array_equal(by_volume.particles["lpfm_phase"], expected.labels)
