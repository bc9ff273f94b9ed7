"""Start a run with the decoder's shape invariants from a checkpoint trained without them.

The decoder's first layer gets three more input columns, initialised to zero (so the
network starts as the old one, to the last digit) and standardised with statistics taken
from synthetic structures; the optimizer starts afresh at the old step. Usage:
    python training/experiments/add_shape_invariants.py OLD.checkpoint.pt NEW_CONFIG.yaml NEW.checkpoint.pt
then `lpfm train NEW_CONFIG.yaml --checkpoint NEW.checkpoint.pt` resumes from it.
"""

import sys

import torch

from lpfm_insitu.training.batches import batch_tensors
from lpfm_insitu.training.trainer import Trainer, TrainingConfig

old_path, config_path, new_path = sys.argv[1:4]
old = torch.load(old_path, weights_only=True)
trainer = Trainer(TrainingConfig.from_file(config_path), progress=False, checkpoint_path=new_path)
network = trainer.network
state = network.state_dict()
for name, value in old["network"].items():
    target = state[name]
    if value.shape == target.shape:
        target.copy_(value)
    elif name == "decoder.mlp.0.weight":  # new input columns at the end, zero weight
        target.zero_()
        target[:, : value.shape[1]] = value
    elif name in ("decoder.feature_mean", "decoder.feature_scale"):
        target[: value.shape[0]] = value
    else:
        raise ValueError(f"{name}: {tuple(value.shape)} -> {tuple(target.shape)}")
network.load_state_dict(state)
samples = trainer.sampler.sample(16)
pos, edge_index, shifts, *_ = batch_tensors(samples, network.r_max)
with torch.no_grad():
    new = network.features(pos, edge_index, shifts)[:, -3:]
    network.decoder.feature_mean[-3:] = new.mean(dim=0)
    network.decoder.feature_scale[-3:] = 1.0 / new.std(dim=0).clamp_min(1e-12)
trainer.step, trainer.elapsed = int(old["step"]), float(old["elapsed"])
trainer.log = []
trainer.save_checkpoint()
print(f"wrote {new_path} at step {trainer.step}; shape features mean "
      f"{network.decoder.feature_mean[-3:].tolist()}, std "
      f"{(1 / network.decoder.feature_scale[-3:]).tolist()}")
