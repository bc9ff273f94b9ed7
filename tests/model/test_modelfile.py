"""Model files: round trip, safety, clear refusals, and the frozen-MACE backbone."""

import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from safetensors.torch import save_file

from lpfm_insitu.model.inference import PhaseModel
from lpfm_insitu.model.network import ModelSpec, build_network
from lpfm_insitu.model.files import (ModelFileError, load_model, read_header, save_model,
                                   spec_for_mace_file)

PHASES = ("A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c")
SMALL = {"channels": 8, "correlation": 2, "max_ell": 2, "num_interactions": 2, "r_max": 4.6}


def _atoms():
    atoms = bulk("Cu", "fcc", a=(4 * 15.0) ** (1 / 3), cubic=True).repeat(2)
    atoms.positions += np.random.default_rng(0).normal(0, 0.1, atoms.positions.shape)
    return atoms


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(1)
    spec = ModelSpec(phases=PHASES, backbone=SMALL)
    model = PhaseModel(build_network(spec), PHASES, confidence_threshold=-1.5,
                       metadata={"name": "t"}, log_prior={PHASES[1]: -0.75},
                       averaging_radius=3.5, step_log_priors={4: {PHASES[1]: -0.25}},
                       phase_thresholds={0: {PHASES[0]: 0.5}},
                       candidate_margins={f"{PHASES[0]},{PHASES[1]}": {0: 2.5, 8: 5.0}})
    path = save_model(tmp_path / "m.safetensors", model, spec, training={"steps": 3})
    return model, path


def test_round_trip_keeps_answers_and_metadata(saved):
    model, path = saved
    loaded = load_model(path)
    assert loaded.phases == PHASES
    assert loaded.confidence_threshold == -1.5
    assert loaded.metadata["training"] == {"steps": 3}
    assert loaded.log_prior == {PHASES[1]: -0.75}
    assert loaded.step_log_priors == {4: {PHASES[1]: -0.25}}
    assert loaded.averaging_radius == 3.5
    assert loaded.phase_thresholds == {0: {PHASES[0]: 0.5}}
    assert loaded.candidate_margins == {tuple(sorted(PHASES[:2])): {0: 2.5, 8: 5.0}}
    np.testing.assert_array_equal(loaded.classify_atoms(_atoms()).logits,
                                  model.classify_atoms(_atoms()).logits)


def test_file_is_plain_safetensors_with_header(saved):
    _, path = saved
    header = read_header(path)
    assert header["format"] == "lpfm-model"
    assert json.loads(header["spec"])["phases"] == list(PHASES)
    assert not path.read_bytes().startswith(b"PK")  # not a zip/pickle


def test_pickle_file_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "evil.safetensors"
    torch.save({"x": 1}, path)  # a pickled file under a model name
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        load_model(path)


def test_foreign_safetensors_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match="not an LPFM model"):
        load_model(path)


def test_newer_format_is_refused_with_upgrade_hint(saved, tmp_path):
    model, _ = saved
    path = tmp_path / "new.safetensors"
    state = {k: v.contiguous() for k, v in model.network.state_dict().items()}
    header = read_header(saved[1])
    header["format_version"] = "99"
    save_file(state, str(path), metadata=header)
    with pytest.raises(ModelFileError, match="upgrade lpfm_insitu"):
        load_model(path)


def test_weights_that_do_not_match_the_header_are_refused(saved, tmp_path):
    model, _ = saved
    header = read_header(saved[1])
    state = {k: v.contiguous() for k, v in model.network.state_dict().items()}
    state.pop(next(iter(state)))
    path = tmp_path / "broken.safetensors"
    save_file(state, str(path), metadata=header)
    with pytest.raises(ModelFileError, match="missing weights"):
        load_model(path)


def test_missing_and_unknown_names(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nothing.safetensors")
    with pytest.raises(ModelFileError, match="no shipped model named 'nonexistent'"):
        load_model("nonexistent")


def test_the_name_default_and_no_name_load_the_default_model():
    from lpfm_insitu.model.files import DEFAULT_MODEL, resolve_model_path, shipped_models

    assert DEFAULT_MODEL in shipped_models() and "default" not in shipped_models()
    assert resolve_model_path("default") == resolve_model_path(DEFAULT_MODEL)
    assert load_model().metadata["name"] == load_model("default").metadata["name"] == DEFAULT_MODEL
    # every shipped file names itself in its header (track.h5 and reports record that name)
    assert all(load_model(name).metadata["name"] == name for name in shipped_models())


def test_frozen_mace_file_backbone_round_trip(tmp_path, small_mace_file):
    mace_path = small_mace_file
    spec, featurizer = spec_for_mace_file(mace_path, PHASES, element=29)
    assert spec.element_index == 1
    network = build_network(spec, mace=featurizer)
    assert all(not p.requires_grad for p in network.mace.parameters())
    assert any(p.requires_grad for p in network.decoder.parameters())
    model = PhaseModel(network, PHASES)
    path = save_model(tmp_path / "frozen.safetensors", model, spec)
    loaded = load_model(path)  # rebuilt from the header: nothing unpickled
    np.testing.assert_allclose(loaded.classify_atoms(_atoms()).logits,
                               model.classify_atoms(_atoms()).logits, atol=1e-6)
    with pytest.raises(ModelFileError, match="not embedded"):
        spec_for_mace_file(mace_path, PHASES, element=26)


def test_each_insitu_classifier_gets_every_setting_of_the_file(saved):
    # the in-situ adapter loads a file once per process and hands each configure() its
    # own PhaseModel: the prior and averaging radius must come along (the prior once
    # did not, and in-situ labels then differed from offline ones)
    from lpfm_insitu.model.files import load_model_cached

    _, path = saved
    first = load_model_cached(str(path))
    second = load_model_cached(str(path))
    assert first.network is second.network  # built once
    reference = load_model(path)
    for copy in (first, second):
        assert copy.log_prior == reference.log_prior == {PHASES[1]: -0.75}
        assert copy.averaging_radius == reference.averaging_radius == 3.5
        assert copy.confidence_threshold == reference.confidence_threshold
        assert (copy.step_size, copy.max_step) == (reference.step_size, reference.max_step)
    first.averaging_radius = 0.0  # configure(averaging_radius=0) on one classifier only
    assert second.averaging_radius == 3.5
    np.testing.assert_array_equal(second.classify_atoms(_atoms()).logits,
                                  reference.classify_atoms(_atoms()).logits)
