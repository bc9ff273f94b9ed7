"""Calibration after training: per-step unknown thresholds and the denoising step size."""

import json

import numpy as np
import pytest
import torch
from ase.build import bulk

from lpfm_insitu.training.calibration import (disordered_packing, prior_of_strength,
                                     step_thresholds_on_liquid, step_thresholds_on_liquids,
                                     _choose_step, _choose_strength, affordable_threshold,
                                     HOT_SLACK, ideal_structures, lattice_thresholds, tune_phase_prior,
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
    assert main(["calibrate", str(model_path), "--liquid", str(liquid), "--hot-loss", "0",
                 "--keep-step-size", "--prior-strength", "keep",
                 "--output", str(tmp_path / "c.safetensors")]) == 0
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
    assert main(["calibrate", str(model_path), "--liquid", str(liquid), "--hot-loss", "0",
                 "--keep-step-size", "--prior-strength", "keep", "--averaging-radius", "3.5",
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
    assert main(["calibrate", str(model_path), "--liquid", str(liquid), "--hot-loss", "0",
                 "--averaging-radius", "-2"]) == 2
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
        # target (or near a crystal's best) on every hot crystal, else the best worst one
        best_each = np.max([s["each_hot_crystal"] for s in scores], axis=0)
        needed = np.minimum(record["hot_target"], best_each - HOT_SLACK)
        eligible = [s for s in scores if np.all(np.array(s["each_hot_crystal"]) >= needed)]
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
    assert main(["calibrate", str(model_path), "--liquid", str(liquid), "--hot-loss", "0",
                 "--keep-step-size", "--prior-strength", "0.5", "--output", str(out)]) == 0
    assert load_model(out).log_prior == {}  # fcc, bcc and hcp are all common
    # the per-step priors belong to the step size: kept with it, whatever the step-0 prior
    tiny_model.step_log_priors = {4: {"A_hP2_194_c": -0.7}}
    try:
        save_model(model_path, tiny_model, SPEC)
    finally:
        tiny_model.step_log_priors = {}
    assert main(["calibrate", str(model_path), "--liquid", str(liquid), "--hot-loss", "0",
                 "--keep-step-size", "--prior-strength", "0.5", "--output", str(out)]) == 0
    assert load_model(out).step_log_priors == {4: {"A_hP2_194_c": -0.7}}
    assert main(["calibrate", str(model_path), "--liquid", str(liquid), "--hot-loss", "0",
                 "--prior-strength", "strong"]) == 2
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


def test_affordable_threshold_costs_at_most_the_given_fraction():
    confidences = np.array([5.0, 1.0, 4.0, 2.0, 3.0])
    t = affordable_threshold(confidences, n_atoms=100, loss=0.02)  # two atoms may go
    assert np.sum(confidences < t) == 2 and np.sum(confidences <= t) == 3
    assert affordable_threshold(confidences, n_atoms=10, loss=0.0) == 1.0
    assert affordable_threshold(confidences, n_atoms=1000, loss=0.01) == np.inf


def test_lattice_thresholds_reject_liquid_atoms_within_the_hot_crystals_budget():
    model = load_model("default")  # a trained model: its crystals and liquids differ
    steps, loss = (0, 2), 0.05
    rng = np.random.default_rng(5)
    liquid = [disordered_packing(200, rng) for _ in range(2)]
    # a shared threshold that passes half the liquid leaves atoms for a lattice to reject
    model.phase_thresholds = {}
    model.step_thresholds = step_thresholds_on_liquid(model, liquid, steps=steps,
                                                      quantile=0.5)
    hot = []
    for label, name, a in (("A_cF4_225_a", "fcc", 3.9), ("A_cI2_229_a", "bcc", 3.1)):
        atoms = bulk("Cu", name, a=a, cubic=True).repeat(4)
        atoms.positions += rng.normal(0, 0.2, atoms.positions.shape)
        hot.append((label, atoms))
    argmax_right = {k: [np.mean(np.argmax(model.classify_atoms(
        a, denoise_steps=k).logits, axis=1) == model.phases.index(lbl)) for lbl, a in hot]
        for k in steps}
    thresholds, record = lattice_thresholds(model, [liquid], hot, steps=steps,
                                            hot_loss=loss, log=lambda *_: None)
    assert thresholds
    model.phase_thresholds = thresholds
    for k in steps:
        assert set(record["by_step"][str(k)]) == {"A_cF4_225_a", "A_cI2_229_a"}
        for label, entry in record["by_step"][str(k)].items():
            raised = thresholds.get(k, {}).get(label, entry["shared"])
            assert raised == max(entry["shared"], min(entry["crystal_cap"],
                                                      entry["liquid_needs"]))
            if entry["liquid_needs"] <= entry["crystal_cap"]:
                for frame in liquid:  # every liquid atom labelled this lattice is rejected
                    labels = model.classify_atoms(frame, denoise_steps=k).labels
                    assert not np.any(labels == model.phases.index(label))
        for (label, atoms), before in zip(hot, argmax_right[k]):
            labels = model.classify_atoms(atoms, denoise_steps=k).labels
            assert np.mean(labels == model.phases.index(label)) >= before - loss - 1e-12


def test_lattice_thresholds_lower_a_phase_its_hot_crystal_pays_for_but_no_liquid_reaches():
    """A shared threshold that costs a hot crystal a third of its atoms: a phase with a hot MD crystal (``lowerable``) gets a lower threshold of its
    own, down to what its crystal affords but never past a liquid atom it labels, so no
    liquid atom more is labelled it; a phase that is not lowerable keeps the shared one.
    A run of more steps never reads an earlier step's lowered threshold."""
    model = load_model("default")
    steps, loss = (0, 1), 0.05
    rng = np.random.default_rng(6)
    liquid = [disordered_packing(200, rng) for _ in range(2)]
    hot = []
    for label, name, a in (("A_cF4_225_a", "fcc", 3.9), ("A_cI2_229_a", "bcc", 3.1)):
        atoms = bulk("Cu", name, a=a, cubic=True).repeat(4)
        atoms.positions += rng.normal(0, 0.25, atoms.positions.shape)
        hot.append((label, atoms))
    bcc = model.phases.index("A_cI2_229_a")
    # a shared threshold that costs the hot bcc crystal a third of its atoms, alone
    model.phase_thresholds = {}
    model.step_thresholds = {k: float(np.quantile(model.classify_atoms(
        hot[1][1], denoise_steps=k).confidence, 0.3)) for k in steps}
    liquid_bcc_before = {k: [np.sum(model.classify_atoms(f, denoise_steps=k).labels == bcc)
                             for f in liquid] for k in steps}
    crystal_before = np.mean(model.classify_atoms(hot[1][1]).labels == bcc)
    thresholds, record = lattice_thresholds(model, [liquid], hot, steps=steps,
                                            hot_loss=loss, lowerable={"A_cI2_229_a"},
                                            log=lambda *_: None)
    assert sorted(thresholds) == list(steps)
    entry = record["by_step"]["0"]["A_cI2_229_a"]
    assert entry["crystal_cap"] < entry["shared"], "the shared threshold must cost bcc here"
    lowered = thresholds[0]["A_cI2_229_a"]
    assert lowered == max(entry["crystal_cap"], entry["liquid_needs"]) < entry["shared"]
    fcc = record["by_step"]["0"]["A_cF4_225_a"]
    assert thresholds[0].get("A_cF4_225_a", fcc["shared"]) >= fcc["shared"]
    model.phase_thresholds = thresholds
    for k in steps:
        for frame, before in zip(liquid, liquid_bcc_before[k]):
            assert np.sum(model.classify_atoms(frame, denoise_steps=k).labels == bcc) == before
    assert np.mean(model.classify_atoms(hot[1][1]).labels == bcc) > crystal_before
    # a 2-step run reads step 1's entry, whatever step 0 lowered
    assert model.unknown_thresholds(2)[bcc] == thresholds[1].get("A_cI2_229_a",
                                                                  model.threshold_for(1))


def test_calibrate_command_raises_phase_thresholds_against_the_hot_crystals(
        tmp_path, monkeypatch, capsys):
    from ase.io import write

    from lpfm_insitu.evaluation import md_snapshots

    rng = np.random.default_rng(9)
    hot_fcc = bulk("Cu", "fcc", a=3.9, cubic=True).repeat(4)
    hot_fcc.positions += rng.normal(0, 0.2, hot_fcc.positions.shape)
    # the LAMMPS crystals, replaced by one made here: the command must use what it returns
    monkeypatch.setattr(md_snapshots, "calibration_hot_crystals",
                        lambda log=print: ([("A_cF4_225_a", hot_fcc)], ["a jiggled fcc"]))
    liquid = tmp_path / "liquid.extxyz"
    write(liquid, [disordered_packing(200, rng) for _ in range(2)])
    out = tmp_path / "c.safetensors"
    # a generous liquid quantile leaves liquid atoms above the shared threshold
    assert main(["calibrate", "default", "--liquid", str(liquid), "--quantile", "0.5",
                 "--keep-step-size", "--prior-strength", "keep", "--hot-loss", "0.01",
                 "--output", str(out)]) == 0
    calibrated = load_model(out)
    record = json.loads(read_header(out)["training"])["calibration"]["phase_thresholds"]
    assert record["hot_loss"] == 0.01 and record["hot_crystals"] == ["a jiggled fcc"]
    before = json.loads(read_header(load_model("default").metadata["path"])["training"])
    after = json.loads(read_header(out)["training"])["calibration"]
    for kept in ("prior", "step_size"):  # kept settings keep the record of their choice
        assert after[kept] == before["calibration"][kept]
    assert calibrated.phase_thresholds == {int(k): v for k, v in record["per_step"].items()}
    assert sorted(calibrated.phase_thresholds) == [0, 1, 2, 4, 8]  # every step, empty or not
    assert any(calibrated.phase_thresholds.values()), \
        "liquid atoms above the shared threshold to reject"
    for k, own in calibrated.phase_thresholds.items():
        assert all(t != calibrated.threshold_for(k) for t in own.values())
    fcc = calibrated.classify_atoms(hot_fcc).labels
    assert np.mean(fcc == 0) >= 0.99  # the hot crystal keeps its label within its budget
    assert main(["calibrate", "default", "--hot-loss", "1.5"]) == 2
    assert "--hot-loss is a fraction" in capsys.readouterr().err


def test_prior_choice_serves_a_crystal_no_strength_brings_to_target(tiny_model):
    fcc, bcc, hcp = range(3)
    common = ("A_cF4_225_a", "A_cI2_229_a")  # the prior lowers hcp only

    def logits(rows):
        return np.array(rows, dtype=float)

    # a beta-like BCC crystal: hcp ahead of bcc by 0.5 on 900 atoms, 1.8 on 77, 10 on 3;
    # 20 atoms fcc's, which no prior on hcp changes: 90% at strength 1, 97.7% at 2, 98% at 50
    beta = logits([[-1, 0, 0.5]] * 900 + [[-1, 0, 1.8]] * 77 + [[-1, 0, 10]] * 3
                  + [[1, 0, -1]] * 20)
    plain = logits([[1, 0, 0]] * 10)  # an FCC crystal, right at any strength
    synthetic = [(hcp, logits([[0, 0, 1.5], [0, 0, 3.0]]))]  # hcp, lost as the prior grows
    scores, best = _choose_strength(tiny_model, [(bcc, beta), (fcc, plain)], synthetic,
                                    (1.0, 2.0, 50.0), common, 0.995, "test",
                                    lambda *_: None)
    assert [s["worst_hot_crystal"] for s in scores] == pytest.approx([0.90, 0.977, 0.98])
    # 97.7% is within HOT_SLACK of the best this crystal reaches: the weaker prior, which
    # keeps more of the synthetic hcp, serves; the old rule took the strongest
    assert best["strength"] == 2.0 and best["synthetic"] == 0.5


def test_candidate_margins_leave_the_quantile_of_each_liquid_below_them(tiny_model):
    from lpfm_insitu.training.calibration import (candidate_margins_on_liquids,
                                                  leads_over_runner_up)

    dense = [disordered_packing(108, np.random.default_rng(3))]
    loose = [disordered_packing(108, np.random.default_rng(4), min_distance_fraction=0.6)]
    pair = ("A_hP2_194_c", "A_cF4_225_a")
    margins = candidate_margins_on_liquids(tiny_model, [dense, loose], [pair], steps=(0, 2),
                                           quantile=0.9)
    assert list(margins) == [tuple(sorted(pair))]
    for steps in (0, 2):
        margin = margins[tuple(sorted(pair))][steps]
        below = []
        for frames in (dense, loose):
            result = tiny_model.classify_atoms(frames[0], denoise_steps=steps,
                                               candidates=list(pair))
            lead = leads_over_runner_up(result.logits[:, [2, 0]])
            below.append(np.mean(lead < margin))
            # no smaller margin would do for the liquid that sets it
            below.append(np.mean(lead < np.nextafter(margin, -np.inf)))
        assert min(below[0], below[2]) >= 0.9  # each liquid
        assert min(below[1], below[3]) < 0.9
    with pytest.raises(ValueError, match="no liquid"):
        candidate_margins_on_liquids(tiny_model, [])


def test_calibrate_command_writes_candidate_margins_for_the_sets_named(tiny_model, tmp_path,
                                                                      capsys):
    from ase.io import write

    model_path = save_model(tmp_path / "m.safetensors", tiny_model, SPEC)
    liquid = tmp_path / "liquid.extxyz"
    write(liquid, [disordered_packing(108, np.random.default_rng(k)) for k in range(2)])
    common = ["calibrate", str(model_path), "--liquid", str(liquid), "--hot-loss", "0",
              "--keep-step-size", "--prior-strength", "keep"]
    assert main(common + ["--candidate-sets", "fcc,hcp", "--output",
                          str(tmp_path / "c.safetensors")]) == 0
    margins = load_model(tmp_path / "c.safetensors").candidate_margins
    assert list(margins) == [("A_cF4_225_a", "A_hP2_194_c")]
    assert sorted(margins[("A_cF4_225_a", "A_hP2_194_c")]) == [0, 1, 2, 4, 8]
    training = json.loads(read_header(tmp_path / "c.safetensors")["training"])
    assert training["calibration"]["candidate_margins"]["quantile"] == 0.99
    # the examples' set is not this model's: no margin unless asked for
    assert main(common + ["--output", str(tmp_path / "d.safetensors")]) == 0
    assert load_model(tmp_path / "d.safetensors").candidate_margins == {}
    capsys.readouterr()
    assert main(common + ["--candidate-sets", "fcc,omega"]) != 0
    assert "--candidate-sets 'fcc,omega'" in capsys.readouterr().err
    assert main(common + ["--candidate-sets", "fcc,bcc,hcp"]) != 0
    assert "leaves some of the model's 3 out" in capsys.readouterr().err


def test_prior_choice_breaks_synthetic_ties_with_the_hot_crystals(tiny_model):
    fcc, bcc, hcp = range(3)
    common = ("A_cF4_225_a", "A_cI2_229_a")  # the prior lowers hcp only
    # a denoised beta-like BCC crystal: 5 of 1,000 atoms lean to hcp by 0.5 (99.5% right
    # with no prior, at the target); synthetic hcp leads by 10, right at every strength
    beta = np.array([[-1, 0, 0.5]] * 5 + [[-1, 0, -1]] * 995, dtype=float)
    synthetic = [(hcp, np.array([[0, 0, 10.0]] * 4))]
    scores, best = _choose_strength(tiny_model, [(bcc, beta)], synthetic, (0.0, 1.0, 2.0),
                                    common, 0.995, "test", lambda *_: None)
    assert [s["synthetic"] for s in scores] == [1.0, 1.0, 1.0]
    assert [s["worst_hot_crystal"] for s in scores] == pytest.approx([0.995, 1.0, 1.0])
    # equal synthetic accuracy: the hot crystal decides, then the weakest such prior (the
    # old rule kept the first strength, 0, leaving the 5 atoms to hcp)
    assert best["strength"] == 1.0


def test_calibrate_command_rechooses_the_step_priors_at_a_kept_step_size(tiny_model, tmp_path,
                                                                         monkeypatch):
    from ase.io import write

    from lpfm_insitu.evaluation import md_snapshots

    hot, _ = _hot_crystals_and_structures(tiny_model, seed=5)
    monkeypatch.setattr(md_snapshots, "calibration_hot_crystals",
                        lambda log=print: (hot, ["two jiggled crystals"]))
    tiny_model.step_size, tiny_model.max_step = 0.004, 0.03
    tiny_model.step_log_priors = {4: {"A_hP2_194_c": -0.7}}
    try:
        model_path = save_model(tmp_path / "m.safetensors", tiny_model, SPEC)
    finally:
        tiny_model.step_log_priors = {}
    liquid = tmp_path / "liquid.extxyz"
    write(liquid, [disordered_packing(108, np.random.default_rng(0))])
    out = tmp_path / "c.safetensors"
    assert main(["calibrate", str(model_path), "--liquid", str(liquid), "--hot-loss", "0",
                 "--keep-step-size", "--output", str(out)]) == 0
    calibrated = load_model(out)
    record = json.loads(read_header(out)["training"])["calibration"]["step_size"]
    # the step size is kept (a grid of one), the per-step priors chosen anew at it
    assert [(c["step_size"], c["max_step"]) for c in record["candidates"]] == [(0.004, 0.03)]
    assert (calibrated.step_size, calibrated.max_step) == (0.004, 0.03)
    chosen = record["chosen"]["prior_strengths"]
    assert sorted(int(k) for k in chosen) == [1, 2, 4, 8]
    assert calibrated.step_log_priors == {
        int(k): prior_of_strength(PHASES, strength) for k, strength in chosen.items()}


def test_calibrate_defaults_to_the_examples_candidate_sets_the_model_has():
    from lpfm_insitu.cli.calibrate import _candidate_sets
    from lpfm_insitu.training.prototypes import PROTOTYPES

    phases = list(PROTOTYPES)
    sets = _candidate_sets(None, phases)
    # the Ti examples' fcc/bcc/hcp/omega and the Fe shock's bcc/hcp/fcc
    assert [set(s) for s in sets] == [
        {"A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c", "A_hP3_191_ad"},
        {"A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c"}]
    # a set the model holds entirely is no restriction, so it gets no margin
    assert _candidate_sets(None, ["A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c"]) == []
