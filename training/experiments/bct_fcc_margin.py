"""Network logit of bct In minus FCC on ideal supercells with Gaussian noise.

No phase prior and no neighbour average: what the network itself says. Usage:
    python training/experiments/bct_fcc_margin.py MODEL_NAME_OR_FILE
"""

import sys

import numpy as np

from lpfm_insitu import load_model
from lpfm_insitu.training.synthetic import ideal_supercell

FCC, BCT_IN = "A_cF4_225_a", "A_tI2_139_a"
SIGMAS = (0.0, 0.05, 0.1, 0.15)  # Å at 15 Å^3/atom

model = load_model(sys.argv[1])
model.log_prior, model.averaging_radius = {}, 0.0
fcc, bct = model.phases.index(FCC), model.phases.index(BCT_IN)
for label in (FCC, BCT_IN):
    ideal = ideal_supercell(label, 15.0, 120)
    margins = []
    for sigma in SIGMAS:
        atoms = ideal.copy()
        atoms.positions += np.random.default_rng(1).normal(0, sigma, atoms.positions.shape)
        logits = model.classify_atoms(atoms).logits
        margins.append(f"{float(np.mean(logits[:, bct] - logits[:, fcc])):+.2f}")
    print(f"{label}: sigma {' / '.join(map(str, SIGMAS))} Å: {' / '.join(margins)}")
