"""Calibration after training: per-step unknown thresholds and the denoising step size."""

import json

import numpy as np
import pytest
import torch
from ase.build import bulk

from lpfm_insitu.training.calibration import (disordered_packing, prior_of_strength,
                                     step_thresholds_on_liquid, step_thresholds_on_liquids,
                                     _choose_step, ideal_structures, tune_phase_prior,
                                     tune_step_size, validation_structures)
from lpfm_insitu.cli.main import main
from lpfm_insitu.constants import UNKNOWN_PHASE
from lpfm_insitu.model.inference import PhaseModel
from lpfm_insitu.model.network import ModelSpec, build_network
from lpfm_insitu.model.files import load_model, read_header, save_model

PHASES = ("A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c")
SPEC = ModelSpec(phases=PHASES, backbone={"channels": 4, "max_ell": 2, "correlation": 2,
                                          "num_interactions": 1})


@pytest.fixture()
def tiny_model():
    torch.manual_seed(0)
    return PhaseModel(build_network(SPEC), PHASES, confidence_threshold=-1.0)


def test_threshold_for_uses_the_largest_calibrated_step_not_above(tiny_model):
    tiny_model.step_thresholds = {0: 1.0, 2: 2.0, 8: 3.0}
    assert [tiny_model.threshold_for(k) for k in (0, 1, 2, 7, 8, 20)] == [1, 1, 2, 2, 3, 3]
    tiny_model.step_thresholds = {}
    assert tiny_model.threshold_for(8) == -1.0


def test_liquid_thresholds_reject_the_requested_fraction_at_every_step(tiny_model):
    liquid = [disordered_packing(108, np.random.default_rng(k)) for k in range(2)]
    thresholds = step_thresholds_on_liquid(tiny_model, liquid, steps=(0, 2), quantile=0.9)
    tiny_model.step_thresholds = thresholds
    for steps in (0, 2):
        labels = np.concatenate([tiny_model.classify_atoms(a, denoise_steps=steps).labels
                                 for a in liquid])
        assert np.mean(labels == UNKNOWN_PHASE) >= 0.9


def test_step_size_tuning_keeps_the_best_candidate(tiny_model):
    structures = validation_structures(tiny_model, sigmas=(0.1,), target_atoms=30)
    ideal = ideal_structures(tiny_model, target_atoms=30)
    record = tune_step_size(tiny_model, grid=((0.001, 0.01), (0.05, 0.3)), denoise_steps=2,
                            structures=structures, ideal=ideal, log=lambda *_: None)
    scores = record["candidates"]
    for score in scores:
        assert 0.0 <= score["worst_ideal_crystal"] <= 1.0
    keeping = [c for c in scores if c["worst_ideal_crystal"] >= 0.995]
    best = (max(keeping, key=lambda c: c["accuracy"]) if keeping else
            max(scores, key=lambda c: (c["worst_ideal_crystal"], c["accuracy"])))
    assert record["chosen"] == best
    assert (tiny_model.step_size, tiny_model.max_step) == (best["step_size"], best["max_step"])
    assert len(scores) == 2 and record["n_structures"] == len(PHASES)
    assert record["n_ideal_crystals"] == len(PHASES)


def _score(accuracy, ideal, hot=None):
    score = {"accuracy": accuracy, "worst_ideal_crystal": ideal}
    return score if hot is None else {**score, "worst_hot_crystal": hot}


def test_step_choice_refuses_a_step_that_walks_an_ideal_crystal_away():
    # the most accurate step size relabels an ideal crystal: the runner-up is chosen
    walks = _score(0.99, 0.0, hot=1.0)
    keeps = _score(0.98, 1.0, hot=1.0)
    assert _choose_step([walks, keeps], 0.995, 0.995) is keeps
    # hot crystals come first, then the ideal ones, then validation accuracy
    cold = _score(0.99, 1.0, hot=0.9)
    assert _choose_step([cold, walks], 0.995, 0.995) is walks
    assert _choose_step([_score(0.9, 0.5, hot=0.9), _score(0.8, 0.6, hot=0.9)],
                        0.995, 0.995)["accuracy"] == 0.8
    # without hot crystals the ideal ones decide first
    assert _choose_step([_score(0.99, 0.2), _score(0.5, 1.0)], 0.995, 0.995)["accuracy"] == 0.5


def _hot_crystals_and_structures(model, seed):
    """Jiggled fcc and bcc supercells standing in for hot MD crystals, and validation cells."""
    rng = np.random.default_rng(seed)
    hot = []
    for label in ("A_cF4_225_a", "A_cI2_229_a"):
        atoms = validation_structures(model, sigmas=(0.2,), target_atoms=40)[
            PHASES.index(label)][1]
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        hot.append((label, atoms))
    return hot, validation_structures(model, sigmas=(0.1,), target_atoms=30)


def test_step_size_tuning_with_hot_crystals_chooses_a_prior_per_run_length(tiny_model):
    hot, structures = _hot_crystals_and_structures(tiny_model, seed=7)
    tiny_model.log_prior = {"A_hP2_194_c": -3.0}
    common = ("A_cF4_225_a", "A_cI2_229_a")
    try:
        record = tune_step_size(tiny_model, grid=((0.001, 0.01), (0.05, 0.3)),
                                denoise_steps=2, structures=structures, hot_crystals=hot,
                                steps=(1, 2), strengths=(0.0, 50.0), common=common,
                                ideal=ideal_structures(tiny_model, target_atoms=30),
                                log=lambda *_: None)
        scores = record["candidates"]
        assert len(scores) == 2 and record["n_hot_crystals"] == 2
        for score in scores:
            assert set(score["prior_strengths"]) == {"1", "2"}
            assert 0.0 <= score["worst_hot_crystal"] <= 1.0
        best = _choose_step(scores, 0.995, 0.995)
        assert record["chosen"] == best
        assert (tiny_model.step_size, tiny_model.max_step) == (best["step_size"],
                                                               best["max_step"])
        # the undenoised prior stays; denoised runs get the chosen strengths
        assert tiny_model.log_prior == {"A_hP2_194_c": -3.0}
        assert tiny_model.step_log_priors == {
            int(k): prior_of_strength(PHASES, v, common)
            for k, v in best["prior_strengths"].items()}
        with pytest.raises(ValueError, match="must include denoise_steps"):
            tune_step_size(tiny_model, grid=((0.001, 0.01),), denoise_steps=2,
                           structures=structures, hot_crystals=hot, steps=(1,),
                           log=lambda *_: None)
    finally:
        tiny_model.log_prior = {}


def test_calibrate_command_writes_thresholds_into_the_model_file(tiny_model, tmp_path):
    model_path = save_model(tmp_path / "m.safetensors", tiny_model, SPEC)
    liquid = tmp_path / "liquid.extxyz"
    from ase.io import write

    write(liquid, [disordered_packing(108, np.random.default_rng(k)) for k in range(2)])
    assert main(["calibrate", str(model_path), "--liquid", str(liquid), "--keep-step-size",
                 "--prior-strength", "keep", "--output", str(tmp_path / "c.safetensors")]) == 0
    calibrated = load_model(tmp_path / "c.safetensors")
    assert sorted(calibrated.step_thresholds) == [0, 1, 2, 4, 8]
    assert calibrated.confidence_threshold == calibrated.step_thresholds[0]
    training = json.loads(read_header(tmp_path / "c.safetensors")["training"])
    assert training["calibration"]["thresholds"]["quantile"] == 0.95
    crystal = bulk("Cu", "fcc", a=(4 * 15.0) ** (1 / 3), cubic=True).repeat(3)
    assert len(calibrated.classify_atoms(crystal, denoise_steps=1).labels) == len(crystal)


def test_calibrate_command_sets_the_averaging_radius_before_the_thresholds(tiny_model,
                                                                          tmp_path, capsys):
    model_path = save_model(tmp_path / "m.safetensors", tiny_model, SPEC)
    liquid = tmp_path / "liquid.extxyz"
    from ase.io import read, write

    write(liquid, [disordered_packing(108, np.random.default_rng(5))])
    out = tmp_path / "c.safetensors"
    assert main(["calibrate", str(model_path), "--liquid", str(liquid), "--keep-step-size",
                 "--prior-strength", "keep", "--averaging-radius", "3.5",
                 "--output", str(out)]) == 0
    calibrated = load_model(out)
    assert calibrated.averaging_radius == 3.5
    # the thresholds are those of the averaged logits, which differ from the atoms' own
    tiny_model.averaging_radius = 3.5
    try:
        expected = step_thresholds_on_liquid(tiny_model, read(liquid, index=":"))
    finally:
        tiny_model.averaging_radius = 0.0
    own = step_thresholds_on_liquid(tiny_model, read(liquid, index=":"), steps=(0,))
    assert calibrated.step_thresholds == pytest.approx(expected, abs=1e-6)
    assert abs(expected[0] - own[0]) > 1e-4
    # a user's mistake: one line and exit status 2, as every lpfm command gives it
    assert main(["calibrate", str(model_path), "--liquid", str(liquid), "--averaging-radius",
                 "-2"]) == 2
    assert "averaging_radius must be between 0" in capsys.readouterr().err


def test_prior_of_strength_lowers_only_the_uncommon_phases():
    assert prior_of_strength(PHASES + ("A_hP4_194_ac",), 1.5) == {"A_hP4_194_ac": -1.5}
    assert prior_of_strength(PHASES, 2.0, common=("A_cF4_225_a",)) == {
        "A_cI2_229_a": -2.0, "A_hP2_194_c": -2.0}
    assert prior_of_strength(PHASES + ("A_hP4_194_ac",), 0.0) == {}


def test_phase_prior_tuning_keeps_the_best_strength_and_sets_it(tiny_model):
    hot, structures = _hot_crystals_and_structures(tiny_model, seed=5)
    # hcp is the only "rare" phase here: the strength moves hcp's logit alone
    record = tune_phase_prior(tiny_model, hot, structures, strengths=(0.0, 1.0, 50.0),
                              common=("A_cF4_225_a", "A_cI2_229_a"), log=lambda *_: None)
    try:
        scores = record["candidates"]
        # a prior of 50 makes hcp unreachable: no hcp structure is right, so synthetic
        # accuracy is at most 2/3, while the two common crystals lose nothing to hcp
        strong = scores[-1]
        assert strong["synthetic"] <= 2 / 3 + 1e-9
        assert strong["worst_hot_crystal"] >= scores[0]["worst_hot_crystal"]
        for s in scores:
            assert s["worst_hot_crystal"] <= s["hot_crystals"]
        # hot crystals first: the best synthetic accuracy among strengths that reach the
        # target on every hot crystal, else the best worst crystal
        target = record["hot_target"]
        eligible = [s for s in scores if s["worst_hot_crystal"] >= target]
        best = (max(eligible, key=lambda s: s["synthetic"]) if eligible else
                max(scores, key=lambda s: (s["worst_hot_crystal"], s["synthetic"])))
        assert record["chosen"] == best
        assert tiny_model.log_prior == prior_of_strength(
            PHASES, best["strength"], ("A_cF4_225_a", "A_cI2_229_a"))
        # with no target to reach, synthetic accuracy alone decides
        free = tune_phase_prior(tiny_model, hot, structures, strengths=(0.0, 1.0, 50.0),
                                common=("A_cF4_225_a", "A_cI2_229_a"), hot_target=0.0,
                                log=lambda *_: None)
        assert free["chosen"]["synthetic"] == max(s["synthetic"] for s in scores)
    finally:
        tiny_model.log_prior = {}


def test_calibrate_command_sets_a_given_prior_strength(tiny_model, tmp_path, capsys):
    model_path = save_model(tmp_path / "m.safetensors", tiny_model, SPEC)
    liquid = tmp_path / "liquid.extxyz"
    from ase.io import write

    write(liquid, [disordered_packing(108, np.random.default_rng(0))])
    out = tmp_path / "c.safetensors"
    assert main(["calibrate", str(model_path), "--liquid", str(liquid), "--keep-step-size",
                 "--prior-strength", "0.5", "--output", str(out)]) == 0
    assert load_model(out).log_prior == {}  # fcc, bcc and hcp are all common
    assert main(["calibrate", str(model_path), "--liquid", str(liquid), "--prior-strength",
                 "strong"]) == 2
    assert "--prior-strength must be" in capsys.readouterr().err


def test_thresholds_over_several_liquids_hold_for_each(tiny_model):
    dense = [disordered_packing(108, np.random.default_rng(3))]
    loose = [disordered_packing(108, np.random.default_rng(4), min_distance_fraction=0.6)]
    each = [step_thresholds_on_liquid(tiny_model, frames, steps=(0,), quantile=0.9)[0]
            for frames in (dense, loose)]
    both = step_thresholds_on_liquids(tiny_model, [dense, loose], steps=(0,), quantile=0.9)
    assert both[0] == max(each)
    tiny_model.step_thresholds = both
    for frames in (dense, loose):
        labels = tiny_model.classify_atoms(frames[0]).labels
        assert np.mean(labels == UNKNOWN_PHASE) >= 0.9
    with pytest.raises(ValueError, match="no liquid"):
        step_thresholds_on_liquids(tiny_model, [])
