"""Calibration after training: per-step unknown thresholds and the denoising step size."""

import json

import numpy as np
import pytest
import torch
from ase.build import bulk

from lpfm_insitu.calibration import (disordered_packing, step_thresholds_on_liquid,
                                     tune_step_size, validation_structures)
from lpfm_insitu.cli import main
from lpfm_insitu.constants import UNKNOWN_PHASE
from lpfm_insitu.inference import PhaseModel
from lpfm_insitu.model import ModelSpec, build_network
from lpfm_insitu.modelfile import load_model, read_header, save_model

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
    record = tune_step_size(tiny_model, grid=((0.001, 0.01), (0.05, 0.3)), denoise_steps=2,
                            structures=structures, log=lambda *_: None)
    best = max(record["candidates"], key=lambda c: c["accuracy"])
    assert (tiny_model.step_size, tiny_model.max_step) == (best["step_size"], best["max_step"])
    assert len(record["candidates"]) == 2 and record["n_structures"] == len(PHASES)


def test_calibrate_command_writes_thresholds_into_the_model_file(tiny_model, tmp_path):
    model_path = save_model(tmp_path / "m.safetensors", tiny_model, SPEC)
    liquid = tmp_path / "liquid.extxyz"
    from ase.io import write

    write(liquid, [disordered_packing(108, np.random.default_rng(k)) for k in range(2)])
    assert main(["calibrate", str(model_path), "--liquid", str(liquid), "--keep-step-size",
                 "--output", str(tmp_path / "c.safetensors")]) == 0
    calibrated = load_model(tmp_path / "c.safetensors")
    assert sorted(calibrated.step_thresholds) == [0, 1, 2, 4, 8]
    assert calibrated.confidence_threshold == calibrated.step_thresholds[0]
    training = json.loads(read_header(tmp_path / "c.safetensors")["training"])
    assert training["calibration"]["thresholds"]["quantile"] == 0.95
    crystal = bulk("Cu", "fcc", a=(4 * 15.0) ** (1 / 3), cubic=True).repeat(3)
    assert len(calibrated.classify_atoms(crystal, denoise_steps=1).labels) == len(crystal)
