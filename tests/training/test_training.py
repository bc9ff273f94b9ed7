"""Training: losses fall, checkpoints resume exactly, configs are checked."""

import json

import numpy as np
import pytest
import torch

from lpfm_insitu.model.files import load_model
from lpfm_insitu.training.trainer import Trainer, TrainingConfig, training_losses

PHASES = ["A_cF4_225_a", "A_cI2_229_a"]
TINY = {"channels": 8, "correlation": 2, "max_ell": 3, "num_interactions": 1, "r_max": 4.6}


def _config(tmp_path, **changes):
    values = dict(output=str(tmp_path / "tiny.safetensors"), phases=PHASES, backbone=TINY,
                  decoder={"hidden": [16]}, steps=60, batch_size=2, learning_rate=1e-2,
                  final_learning_rate=1e-3, target_atoms=40, sigma_max=0.15, seed=3,
                  checkpoint_every=10)
    values.update(changes)
    return TrainingConfig(**values)


def _losses(trainer, batch):
    trainer.network.eval()
    ce, sm, _ = training_losses(trainer.network, batch, 1.0)
    return ce.item(), sm.item()


def test_a_tiny_training_run_lowers_both_losses(tmp_path):
    # A few structures seen again and again: what a tiny run can show is that the loop,
    # the losses and their gradients drive both terms down.
    torch.set_num_threads(1)
    trainer = Trainer(_config(tmp_path, steps=40, score_weight=1.0, learning_rate=2e-2),
                      progress=False)
    fixed = trainer.batch(0) + trainer.batch(1)
    trainer.batch = lambda step: fixed
    ce0, sm0 = _losses(trainer, fixed)
    trainer.train()
    ce1, sm1 = _losses(trainer, fixed)
    assert ce1 < 0.95 * ce0, (ce0, ce1, sm0, sm1)
    assert sm1 < 0.9 * sm0, (ce0, ce1, sm0, sm1)
    path = trainer.finish()
    model = load_model(path)
    assert model.phases == tuple(PHASES)
    assert np.isfinite(model.confidence_threshold)
    assert model.metadata["training"]["steps_done"] == 40


def test_the_papers_frozen_mace_backbone_trains_its_decoder_only(tmp_path, small_mace_file):
    """Backbone (b): a MACE model file as a frozen featurizer; `lpfm train` fits the new
    decoder, leaves every MACE weight as it was, and the written model reloads from the
    safetensors file alone (the MACE file is not needed, nothing is unpickled)."""
    torch.set_num_threads(1)
    config = _config(tmp_path, backbone={"mace_file": str(small_mace_file), "element": 29},
                     steps=30, score_weight=1.0, learning_rate=2e-2)
    trainer = Trainer(config, progress=False)
    assert trainer.spec.backbone_kind == "mace_file"
    mace_before = {k: v.clone() for k, v in trainer.network.mace.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in trainer.network.decoder.state_dict().items()}
    fixed = trainer.batch(0) + trainer.batch(1)
    trainer.batch = lambda step: fixed
    ce0, _ = _losses(trainer, fixed)
    trainer.train()
    ce1, _ = _losses(trainer, fixed)
    assert ce1 < 0.95 * ce0, (ce0, ce1)
    for name, value in trainer.network.mace.state_dict().items():
        assert torch.equal(value, mace_before[name]), name
    assert any(not torch.equal(v, decoder_before[k])
               for k, v in trainer.network.decoder.state_dict().items())
    path = trainer.finish()
    small_mace_file.unlink()
    model = load_model(path)
    batch_atoms = fixed[0].atoms
    np.testing.assert_allclose(model.classify_atoms(batch_atoms).logits,
                               trainer.phase_model().classify_atoms(batch_atoms).logits,
                               atol=1e-5)


@pytest.mark.parametrize("backbone, match", [
    ({"mace_file": "a.model", "mace_mp": "small"}, "exactly one of 'mace_file'"),
    ({"element": 29}, "exactly one of 'mace_file'"),
    ({"mace_file": "a.model", "channels": 8}, r"got \['channels', 'mace_file'\]"),
    ({"mace_mp": "no-such-release"}, "unknown MACE-MP release 'no-such-release'"),
])
def test_a_frozen_backbone_setting_that_cannot_work_is_refused(tmp_path, backbone, match):
    with pytest.raises(ValueError, match=match):
        Trainer(_config(tmp_path, backbone=backbone), progress=False)


def test_a_mace_mp_download_that_fails_says_what_to_do(tmp_path, monkeypatch):
    import mace.calculators.foundations_models as foundations

    def offline(name):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(foundations, "download_mace_mp_checkpoint", offline)
    with pytest.raises(ValueError, match="could not get the MACE-MP model 'small'.*Network is "
                                         "unreachable.*give the file as backbone.mace_file"):
        Trainer(_config(tmp_path, backbone={"mace_mp": "small", "element": 29}), progress=False)


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    torch.set_num_threads(1)
    straight = Trainer(_config(tmp_path / "a", steps=6, checkpoint_every=3), progress=False)
    straight.train()
    interrupted = Trainer(_config(tmp_path / "b", steps=6, checkpoint_every=3), progress=False)
    interrupted.train(until=3)
    resumed = Trainer(_config(tmp_path / "b", steps=6, checkpoint_every=3), progress=False)
    assert resumed.resume() and resumed.step == 3
    resumed.train()
    for (name, a), b in zip(straight.network.state_dict().items(),
                            resumed.network.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_resume_refuses_a_checkpoint_of_another_architecture(tmp_path):
    first = Trainer(_config(tmp_path, steps=2, checkpoint_every=1), progress=False)
    first.train()
    other = Trainer(_config(tmp_path, steps=2, backbone={**TINY, "channels": 4}), progress=False)
    with pytest.raises(ValueError, match="other settings.*backbone"):
        other.resume()


def test_config_file_with_a_typo_is_refused(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"stepz": 3}))
    with pytest.raises(ValueError, match="unknown training setting.*stepz"):
        TrainingConfig.from_file(path)


def test_config_phase_weights_and_strain_reach_the_sampler(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"phases": PHASES, "phase_weights": {"A_cI2_229_a": 4},
                                "strain": {"narrow_shear": ["A_cF4_225_a"], "shear_std": 0.05}}))
    trainer = Trainer(TrainingConfig.from_file(path), progress=False)
    np.testing.assert_allclose(trainer.sampler.label_probabilities, [0.2, 0.8])
    assert trainer.sampler.narrow_shear == {"A_cF4_225_a"}
    assert trainer.sampler.shear_std == 0.05
    with pytest.raises(ValueError, match="unknown strain setting.*shear_sd"):
        Trainer(_config(tmp_path, strain={"shear_sd": 0.1}), progress=False)


def test_every_committed_training_config_builds_its_trainer(tmp_path):
    """The shipped models' configs and the experiments' are ones ``lpfm train`` accepts."""
    from pathlib import Path

    from lpfm_insitu.training.trainer import Trainer, TrainingConfig

    root = Path(__file__).resolve().parents[2]
    paths = sorted([*root.glob("lpfm_insitu/model/shipped/*.yaml"),
                    *root.glob("training/experiments/*.yaml")])
    assert len(paths) >= 8
    threads = torch.get_num_threads()
    try:
        for path in paths:
            config = TrainingConfig.from_file(path)
            config.output = str(tmp_path / "unused.safetensors")
            trainer = Trainer(config)  # validates strain settings, phase weights, backbone
            assert trainer.sampler.labels == tuple(trainer.spec.phases), path
    finally:
        torch.set_num_threads(threads)  # a config's thread count is not the suite's
