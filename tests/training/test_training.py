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


@pytest.mark.parametrize("prefetch", [0, 2])
def test_resumed_training_equals_uninterrupted_training(tmp_path, prefetch):
    """Also with batches built ahead by the background thread (what a GPU run does)."""
    torch.set_num_threads(1)
    straight = Trainer(_config(tmp_path / "a", steps=6, checkpoint_every=3), progress=False)
    straight.train()
    config = _config(tmp_path / "b", steps=6, checkpoint_every=3, prefetch=prefetch)
    interrupted = Trainer(config, progress=False)
    interrupted.train(until=3)
    resumed = Trainer(config, progress=False)
    assert resumed.resume() and resumed.step == 3
    resumed.train()
    for (name, a), b in zip(straight.network.state_dict().items(),
                            resumed.network.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    assert [row["ce"] for row in straight.log] == [row["ce"] for row in resumed.log]


def test_batches_built_ahead_are_the_batches_of_their_steps(tmp_path):
    from lpfm_insitu.training.batches import BatchesAhead

    trainer = Trainer(_config(tmp_path, prefetch=2), progress=False)
    with BatchesAhead(trainer.batch_on_host, 5, 9, depth=2) as ahead:
        for step in range(5, 9):
            # drawn on this thread while the background one draws the next: the sampler
            # is shared, so this also checks that drawing is thread-safe
            built, direct = ahead.next(step), trainer.batch_on_host(step)
            for a, b in zip(built, direct):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
        with pytest.raises(ValueError, match="step 9"):
            ahead.next(9)  # past the last step asked for

    def failing(step):
        raise RuntimeError(f"no structure for step {step}")

    with BatchesAhead(failing, 0, 3, depth=2) as ahead:
        with pytest.raises(RuntimeError, match="step 0"):
            ahead.next(0)
        with pytest.raises(ValueError, match="step 2"):
            ahead.next(2)  # out of order


def test_training_device_is_checked_before_any_work(tmp_path, monkeypatch):
    from lpfm_insitu.errors import LPFMError
    from lpfm_insitu.training.batches import training_device

    assert training_device("cpu") == torch.device("cpu")
    with pytest.raises(LPFMError, match="'tpu' is not one of"):
        Trainer(_config(tmp_path, device="tpu"), progress=False)
    with pytest.raises(LPFMError, match="prefetch must be 0"):
        Trainer(_config(tmp_path, prefetch=-1), progress=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert training_device("auto") == torch.device("cpu")
    with pytest.raises(LPFMError, match="sees 0 CUDA device.*device 'cpu'"):
        Trainer(_config(tmp_path, device="cuda"), progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_a_gpu_follows_the_cpu_run_and_writes_a_host_model(tmp_path):
    torch.set_num_threads(1)
    on_cpu = Trainer(_config(tmp_path / "cpu", steps=4), progress=False)
    on_cpu.train()
    on_gpu = Trainer(_config(tmp_path / "gpu", steps=4, device="cuda"), progress=False)
    assert on_gpu.prefetch == 2
    on_gpu.train()
    assert next(on_gpu.network.parameters()).device.type == "cuda"
    np.testing.assert_allclose([r["ce"] for r in on_gpu.log], [r["ce"] for r in on_cpu.log],
                               rtol=1e-3)
    path = on_gpu.finish(confidence_threshold=1.0)
    assert tuple(load_model(path).phases) == tuple(PHASES)
    # resumes on the CPU from the GPU's checkpoint
    again = Trainer(_config(tmp_path / "gpu", steps=4), progress=False)
    assert again.resume() and again.step == 4


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
