"""Checkpoint trigger rules: parsing, firing moments, cooldown, max count, restart state."""

import json

import numpy as np
import pytest

from lpfm_insitu.tracking.statistics import PhaseStatistics
from lpfm_insitu.tracking.triggers import (
    GRAMMAR,
    CheckpointTrigger,
    ConfidenceDrop,
    FractionChange,
    PhaseAppears,
    parse_rules,
)

PHASES = ("A_cI2_229_a", "A_hP2_194_c", "A_hP3_191_ad")
N = 10_000


def stats(hcp=0.0, omega=0.0, unknown=0.0, conf=4.0):
    """Global statistics with the given fractions (rest is the parent bcc)."""
    counts = np.rint(np.array([0.0, hcp, omega, unknown]) * N).astype(int)
    counts[0] = N - counts[1:].sum()
    return PhaseStatistics(PHASES, counts, N, conf, np.zeros(3))


# -- parsing ---------------------------------------------------------------
def test_parse_example_and_roundtrip():
    rules = parse_rules("appear:A_hP3_191_ad>0.05, change:A_hP2_194_c>0.1, confidence<2.0", PHASES)
    assert rules == [PhaseAppears("A_hP3_191_ad", 0.05), FractionChange("A_hP2_194_c", 0.1), ConfidenceDrop(2.0)]
    assert parse_rules(",".join(r.spec for r in rules), PHASES) == rules
    assert parse_rules("  APPEAR : unknown > .2 ,confidence< -1e-1", PHASES) == [
        PhaseAppears("unknown", 0.2), ConfidenceDrop(-0.1)]
    assert parse_rules("", PHASES) == [] and parse_rules("   ", PHASES) == []


def test_unknown_phase_lists_valid_names():
    with pytest.raises(ValueError) as err:
        parse_rules("appear:A_hP3_191_ad>0.05, change:A_hP2_194>0.1", PHASES)
    msg = str(err.value)
    assert "'A_hP2_194'" in msg
    for p in PHASES + ("unknown",):
        assert p in msg
    assert "did you mean 'A_hP2_194_c'" in msg


@pytest.mark.parametrize(
    "token",
    ["appear:A_hP3_191_ad<0.05", "appear A_hP3_191_ad>0.05", "confidence>2", "grow:A_hP2_194_c>0.1",
     "appear:A_hP3_191_ad>abc", "change:A_hP2_194_c>1.5", "appear:A_hP3_191_ad>0.05 change:A_hP2_194_c>0.1"],
)
def test_bad_syntax_shows_token_and_grammar(token):
    with pytest.raises(ValueError) as err:
        parse_rules(f"confidence<1, {token}", PHASES)
    msg = str(err.value)
    assert repr(token) in msg
    assert GRAMMAR in msg


def test_empty_rule_between_commas_is_an_error():
    with pytest.raises(ValueError, match="empty rule"):
        parse_rules("confidence<1,,appear:A_hP2_194_c>0.1", PHASES)


# -- firing ------------------------------------------------------------------
def run(trigger, series, start=0, every=10):
    """Feed (step, stats) and return {step: fired descriptions} for non-empty firings."""
    fired = {}
    for i, st in enumerate(series):
        step = start + i * every
        out = trigger.update(step, st)
        if out:
            fired[step] = out
    return fired


def test_appear_fires_exactly_at_crossing_once_per_crossing():
    omega = [0.0, 0.01, 0.04, 0.06, 0.08, 0.1, 0.03, 0.02, 0.07, 0.09]
    trig = CheckpointTrigger([PhaseAppears("A_hP3_191_ad", 0.05)])
    fired = run(trig, [stats(omega=w) for w in omega])
    assert list(fired) == [30, 80]
    assert fired[30][0].startswith("appear:omega>0.05")
    assert trig.n_fired == 2 and trig.last_fire_step == 80


def test_already_above_at_first_evaluation_is_not_a_crossing():
    trig = CheckpointTrigger([PhaseAppears("A_hP3_191_ad", 0.05)])
    fired = run(trig, [stats(omega=w) for w in (0.2, 0.3, 0.01, 0.2)])
    assert fired == {30: ["appear:omega>0.05 (omega fraction 0.2)"]}


def test_cooldown_blocks_and_defers_crossing():
    rules = [PhaseAppears("A_hP3_191_ad", 0.05), PhaseAppears("A_hP2_194_c", 0.05)]
    trig = CheckpointTrigger(rules, cooldown_steps=50)
    series = [stats(), stats(hcp=0.1),  # step 10: hcp crosses -> fires
              stats(hcp=0.1, omega=0.1),  # step 20: omega crosses inside cooldown -> blocked
              stats(hcp=0.1, omega=0.1), stats(hcp=0.1, omega=0.1), stats(hcp=0.1, omega=0.1),
              stats(hcp=0.1, omega=0.1),  # step 60: cooldown over, omega still above -> fires
              stats(hcp=0.1, omega=0.1)]
    fired = run(trig, series)
    assert list(fired) == [10, 60]
    assert fired[10][0].startswith("appear:hcp") and fired[60][0].startswith("appear:omega")


def test_crossing_that_disappears_during_cooldown_does_not_fire():
    trig = CheckpointTrigger([PhaseAppears("A_hP3_191_ad", 0.05), ConfidenceDrop(2.0)], cooldown_steps=100)
    series = [stats(), stats(conf=1.0), stats(conf=1.0, omega=0.1)] + [stats(conf=1.0)] * 20
    assert list(run(trig, series)) == [10]


def test_max_checkpoints():
    trig = CheckpointTrigger([PhaseAppears("A_hP3_191_ad", 0.05)], max_checkpoints=2)
    omega = [0.0, 0.1, 0.0, 0.1, 0.0, 0.1, 0.0, 0.1]
    assert list(run(trig, [stats(omega=w) for w in omega])) == [10, 30]
    assert trig.n_fired == 2
    zero = CheckpointTrigger([PhaseAppears("A_hP3_191_ad", 0.05)], max_checkpoints=0)
    assert run(zero, [stats(omega=w) for w in omega]) == {}


def test_change_uses_first_evaluation_then_last_checkpoint():
    trig = CheckpointTrigger([FractionChange("A_hP2_194_c", 0.1)])
    hcp = [0.2, 0.25, 0.31, 0.35]
    fired = run(trig, [stats(hcp=h) for h in hcp])
    assert list(fired) == [20, 30]  # level condition: keeps firing until a checkpoint is recorded
    assert "0.2 -> 0.31" in fired[20][0]
    trig.record_checkpoint(30, stats(hcp=0.35))
    assert run(trig, [stats(hcp=h) for h in (0.4, 0.44, 0.46)], start=40) == {
        60: ["change:hcp>0.1 (hcp fraction 0.35 -> 0.46)"]}


def test_change_of_unknown_fraction_and_decrease():
    trig = CheckpointTrigger(parse_rules("change:unknown>0.05", PHASES))
    assert list(run(trig, [stats(unknown=u) for u in (0.2, 0.18, 0.14, 0.3)])) == [20, 30]


def test_confidence_drop_on_crossing_and_ignores_nan():
    trig = CheckpointTrigger([ConfidenceDrop(2.0)])
    conf = [3.0, 2.5, float("nan"), 1.9, 1.5, 2.1, float("nan"), 1.0]
    assert list(run(trig, [stats(conf=c) for c in conf])) == [30, 70]


def test_state_dict_roundtrip_continues_cooldown_and_count():
    rules = parse_rules("appear:A_hP3_191_ad>0.05, change:A_hP2_194_c>0.1", PHASES)
    omega = [0.0, 0.1, 0.0, 0.1, 0.0, 0.1, 0.0, 0.1, 0.0, 0.1, 0.0, 0.1]
    hcp = [0.0, 0.0, 0.05, 0.08, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]
    series = [stats(hcp=h, omega=w) for h, w in zip(hcp, omega)]

    full = CheckpointTrigger(rules, cooldown_steps=25, max_checkpoints=3)
    expected = run(full, series)

    first = CheckpointTrigger(rules, cooldown_steps=25, max_checkpoints=3)
    part1 = run(first, series[:5])
    saved = json.loads(json.dumps(first.state_dict()))  # must survive JSON
    restarted = CheckpointTrigger(rules, cooldown_steps=25, max_checkpoints=3)
    restarted.load_state_dict(saved)
    part2 = run(restarted, series[5:], start=50)
    assert {**part1, **part2} == expected
    assert restarted.n_fired == full.n_fired == 3

    fresh = CheckpointTrigger(rules, cooldown_steps=25, max_checkpoints=3)
    assert run(fresh, series[5:], start=50) != part2  # without state the outcome differs


def test_unknown_phase_in_rule_object_raises_on_update():
    trig = CheckpointTrigger([PhaseAppears("nope", 0.1)])
    with pytest.raises(ValueError, match="nope"):
        trig.update(0, stats())


def test_invalid_configuration():
    with pytest.raises(ValueError):
        CheckpointTrigger([ConfidenceDrop(1.0), ConfidenceDrop(1.0)])
    with pytest.raises(ValueError):
        CheckpointTrigger([], cooldown_steps=-1)


def test_offline_tracking_records_triggers_like_in_situ(tmp_path):
    """``lpfm track --triggers``: the same rules, cooldown and maximum as in situ; each
    fired trigger is recorded in the time series, the frame written as extxyz beside it."""
    from types import SimpleNamespace

    from ase.build import bulk
    from ase.io import read

    from lpfm_insitu.tracking.offline import track_frames
    from lpfm_insitu.tracking.timeseries import read_time_series

    phases = ("A_cF4_225_a", "A_hP2_194_c")

    class LabelsOfTheFrame:
        """A model whose answer is each frame's array ``truth``."""

        metadata = {"path": "truth.safetensors", "name": "truth"}

        def __init__(self):
            self.phases = phases

        def classify_atoms(self, atoms, **_):
            labels = atoms.arrays["truth"].astype(np.int64)
            n = len(labels)
            logits = np.zeros((n, len(phases)))
            logits[np.arange(n), labels] = 1.0
            return SimpleNamespace(labels=labels, confidence=np.ones(n), logits=logits,
                                   probability=logits, displacement=np.zeros((n, 3)),
                                   phases=phases)

    frames = []
    for k, hcp in enumerate([0, 0, 3, 3, 0, 3, 0, 3]):  # hcp atoms out of 4
        atoms = bulk("Cu", "fcc", a=3.615, cubic=True)
        atoms.new_array("truth", np.array([1] * hcp + [0] * (4 - hcp)))
        atoms.info["timestep"] = 10 * k
        frames.append(atoms)
    output = tmp_path / "offline.h5"
    track_frames(LabelsOfTheFrame(), frames, output, triggers="appear:hcp>0.5",
                 cooldown=35, max_checkpoints=2, write_frames=True)
    data = read_time_series(output)
    assert data["step"].tolist() == list(range(0, 80, 10))
    # crossings at 20, 50, 70: 50 is in the cooldown of 20 (held, then the rule is false)
    assert data["triggers"]["step"].tolist() == [20, 70]
    assert data["triggers"]["description"][0] == "appear:hcp>0.5 (hcp fraction 0.75)"
    written = output.with_name("offline.checkpoint.20.extxyz")
    assert data["triggers"]["files"][0] == [str(written)]
    assert read(written).arrays["lpfm_phase"].tolist() == [1, 1, 1, 0]
    assert data["attrs"]["triggers"] == "appear:A_hP2_194_c>0.5"
    # without triggers the file has the attributes of earlier versions only
    track_frames(LabelsOfTheFrame(), frames, tmp_path / "plain.h5")
    plain = read_time_series(tmp_path / "plain.h5")
    assert sorted(plain["attrs"]) == ["denoise_steps", "model", "model_name", "source",
                                      "time_unit"]
    assert len(plain["triggers"]["step"]) == 0
