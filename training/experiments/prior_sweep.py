"""Accuracy after 8 denoising steps under phase priors, with bct In's prior set apart.

On `lpfm calibrate`'s own structures: the held-out hot LAMMPS crystals (Ni, W, Zr, Ge)
and the synthetic validation supercells of every prototype. Usage:
    python training/experiments/prior_sweep.py MODEL_NAME_OR_FILE
"""

import sys

import numpy as np

from lpfm_insitu import load_model
from lpfm_insitu.training.calibration import prior_of_strength, validation_structures
from lpfm_insitu.evaluation.md_snapshots import DEFAULT_CACHE, snapshots
from lpfm_insitu.evaluation.md_templates import CALIBRATION_CRYSTALS

STEPS = 8
PRIORS = ((0.0, 0.0), (1.0, 0.0), (1.0, 0.25), (1.0, 0.5), (1.0, 0.75), (1.0, 1.0))

model = load_model(sys.argv[1])
model.log_prior = {}  # the denoising path does not depend on the prior: apply it afterwards
phases = list(model.phases)
bct_in = phases.index("A_tI2_139_a")
hot = [(s.true_label, atoms) for s in CALIBRATION_CRYSTALS
       for atoms in snapshots(s, DEFAULT_CACHE, 2, print)[0]]


def final_logits(pairs):
    return [(phases.index(label), model.classify_atoms(atoms, denoise_steps=STEPS).logits)
            for label, atoms in pairs]


hot_logits, synthetic_logits = final_logits(hot), final_logits(validation_structures(model))
for rare, bct in PRIORS:
    shift = model.log_prior_vector(prior_of_strength(phases, rare))
    shift[bct_in] = -bct

    def accuracies(pairs):
        return [float(np.mean(np.argmax(logits + shift, axis=1) == truth))
                for truth, logits in pairs]

    synthetic = accuracies(synthetic_logits)
    bct_acc = np.mean([a for (truth, _), a in zip(synthetic_logits, synthetic)
                       if truth == bct_in])
    print(f"rare prior {rare:g} / bct In prior {bct:g}: worst hot crystal "
          f"{100 * min(accuracies(hot_logits)):.1f}%, synthetic {100 * np.mean(synthetic):.1f}%, "
          f"bct In {100 * bct_acc:.0f}%")
