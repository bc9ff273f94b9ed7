"""Does a sign-odd local invariant tell FCC compressed along a cube axis from bct In?

For each atom, the second moment of the unit vectors to its first-shell neighbours,
averaged once over those neighbours (what a second message-passing layer would see), and
of its deviatoric part D the Lode-angle invariant cos 3theta = (3 sqrt 3 / 2) det D /
J2^(3/2), J2 = D:D / 2. It is scale free and odd in the distortion: -1 for a uniaxial
compression, +1 for a uniaxial extension, whatever their size. The network of `balanced`
(correlation 2) separates FCC from bct In by the size of the distortion instead
(training/experiments/README.md, experiment I). No model is involved here. Usage:
    python training/experiments/tetragonal_sign_invariant.py
"""

import numpy as np
from ase.build import bulk
from ase.neighborlist import neighbor_list

from lpfm_insitu.evaluation.strain_eval import deformation
from lpfm_insitu.training.synthetic import apply_strain, ideal_supercell

NOISE = (0.0, 0.03, 0.05, 0.08)  # Gaussian sigma per coordinate, in nearest-neighbour distances


def lode_cosine(atoms, cutoff):
    i, j, vectors = neighbor_list("ijD", atoms, cutoff)
    unit = vectors / np.linalg.norm(vectors, axis=1)[:, None]
    count = np.bincount(i, minlength=len(atoms))
    moment = np.zeros((len(atoms), 3, 3))
    np.add.at(moment, i, unit[:, :, None] * unit[:, None, :])
    moment /= count[:, None, None]
    averaged = moment.copy()
    np.add.at(averaged, i, moment[j])
    averaged /= (1 + count)[:, None, None]
    dev = averaged - np.trace(averaged, axis1=1, axis2=2)[:, None, None] / 3 * np.eye(3)
    j2 = 0.5 * np.einsum("nij,nij->n", dev, dev)
    return 1.5 * np.sqrt(3) * np.linalg.det(dev) / np.maximum(j2, 1e-12) ** 1.5


rng = np.random.default_rng(0)
fcc = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(5)
fcc_nn = 3.615 / 2 ** 0.5
bct_in = ideal_supercell("A_tI2_139_a", 15.0, 200)
bct_nn = np.sort(bct_in.get_all_distances(mic=True)[0])[1]
cases = [("FCC compressed 10% along z", apply_strain(fcc, deformation("uniaxial z", 0.10)), fcc_nn),
         ("FCC compressed 5% along z", apply_strain(fcc, deformation("uniaxial z", 0.05)), fcc_nn),
         ("FCC", fcc, fcc_nn), ("bct In", bct_in, bct_nn)]
for noise in NOISE:
    cells = []
    for name, crystal, nn in cases:
        atoms = crystal.copy()
        atoms.positions += rng.normal(0.0, noise * nn, atoms.positions.shape)
        cosine = lode_cosine(atoms, 1.2 * nn)
        cells.append(f"{name} {np.median(cosine):+.2f} ({100 * np.mean(cosine < 0):.0f}% < 0)")
    print(f"noise {noise:.2f} nn: " + " | ".join(cells))
