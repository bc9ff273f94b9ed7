"""Omega stretched along c, and the Ti ramp's transformed frame, for one or more models.

Experiment N's check against the default (experiments/README.md, N):
    python training/experiments/omega_stretch_check.py TI_OMEGA_DUMP default MODEL.safetensors
with TI_OMEGA_DUMP the dump of `lpfm demo --example ti` (its last frame is used). Ideal
omega at 15 A^3/atom is stretched along c by 0/10/15% (sigma 0.08 A noise); each model
classifies it and the Ti frame at 0 and 8 denoising steps, over all phases (and over
fcc/bcc/hcp/omega for the Ti frame); the four largest fractions are printed.
"""
import sys, json
import numpy as np
from ase.io import read
from lpfm_insitu.model.files import load_model
from lpfm_insitu.training.prototypes import build_prototype
from lpfm_insitu.bench.timing import perturbed_crystal

OMEGA, A15 = "A_hP3_191_ad", "A_cP8_223_ac"
CAND = ["A_cI2_229_a", "A_hP2_194_c", "A_cF4_225_a", OMEGA]

def fractions(model, labels):
    names = list(model.phases) + ["unknown"]
    u, c = np.unique(labels, return_counts=True)
    return {names[k] if k >= 0 else "unknown": round(float(n) / len(labels), 4)
            for k, n in sorted(zip(u, c), key=lambda x: -x[1])[:4]}

out = {}
for name in sys.argv[2:]:
    model = load_model(name)
    r = {}
    omega = build_prototype(OMEGA, 15.0, primitive=False)
    for strain in (0.0, 0.10, 0.15):
        cell = omega.cell.array.copy(); cell[2] *= 1 + strain
        stretched = omega.copy(); stretched.set_cell(cell, scale_atoms=True)
        atoms = perturbed_crystal(stretched, (4, 4, 6), seed=3, sigma=0.08)
        for k in (0, 8):
            res = model.classify_atoms(atoms, denoise_steps=k, nn_distance=None)
            r[f"omega_c+{strain:.2f}_{k}steps"] = fractions(model, res.labels)
    frame = read(sys.argv[1], index=-1, format="lammps-dump-text")
    for k in (0, 8):
        r[f"ti_ramp_all_{k}"] = fractions(model, model.classify_atoms(frame, denoise_steps=k).labels)
        r[f"ti_ramp_cand_{k}"] = fractions(model, model.classify_atoms(frame, denoise_steps=k, candidates=CAND).labels)
    out[name] = r
    print(name, json.dumps(r, indent=1), flush=True)
