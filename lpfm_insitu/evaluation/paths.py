"""Transformation paths between prototypes, at constant volume per atom.

* Bain path (BCC -> FCC): a body-centred tetragonal cell, c/a from 1 (BCC) to sqrt(2)
  (FCC), volume per atom fixed.
* Burgers path (HCP -> BCC): the 4-atom orthorhombic cell shared by both structures
  (x = [001]_bcc / [2-1-10]_hcp, y = [1-10]_bcc / [01-10]_hcp, z = [110]_bcc / [0001]_hcp).
  The shear takes the (110)_bcc plane (b/a = sqrt(2)) to the basal plane (b/a = sqrt(3))
  and c/a from sqrt(2) to the HCP value; the shuffle moves alternate planes by b/6 along
  y. Both are interpolated linearly in one coordinate, with the volume kept constant.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms

from ..model.inference import REFERENCE_ATOMIC_VOLUME
from ..training.prototypes import SYMBOL

SQRT2, SQRT3 = math.sqrt(2.0), math.sqrt(3.0)
#: c/a of the HCP end of the Burgers path (the Mg prototype's value).
HCP_C_OVER_A = 5.2108 / 3.2094


def bain_cell(c_over_a: float, atomic_volume: float = REFERENCE_ATOMIC_VOLUME,
              repeat: tuple[int, int, int] | None = (5, 5, 4)) -> Atoms:
    """Body-centred tetragonal crystal with this c/a (1: BCC, sqrt(2): FCC)."""
    if c_over_a <= 0:
        raise ValueError(f"c/a must be positive, got {c_over_a}")
    a = (2.0 * atomic_volume / c_over_a) ** (1.0 / 3.0)
    c = c_over_a * a
    atoms = Atoms(SYMBOL * 2, scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.5)],
                  cell=np.diag([a, a, c]), pbc=True)
    return atoms.repeat(repeat) if repeat else atoms


def burgers_cell(x: float, atomic_volume: float = REFERENCE_ATOMIC_VOLUME,
                 repeat: tuple[int, int, int] | None = (5, 3, 3),
                 hcp_c_over_a: float = HCP_C_OVER_A) -> Atoms:
    """Crystal at Burgers-path coordinate ``x``: 0 is HCP, 1 is BCC."""
    if not -0.5 <= x <= 1.5:
        raise ValueError(f"Burgers coordinate should lie near [0, 1], got {x}")
    b_over_a = SQRT3 + x * (SQRT2 - SQRT3)
    c_over_a = hcp_c_over_a + x * (SQRT2 - hcp_c_over_a)
    shuffle = (1.0 - x) / 6.0  # of b, applied to the z = 1/2 plane
    a = (4.0 * atomic_volume / (b_over_a * c_over_a)) ** (1.0 / 3.0)
    scaled = [(0, 0, 0), (0.5, 0.5, 0), (0.5, -shuffle, 0.5), (0.0, 0.5 - shuffle, 0.5)]
    atoms = Atoms(SYMBOL * 4, scaled_positions=np.mod(scaled, 1.0),
                  cell=np.diag([a, b_over_a * a, c_over_a * a]), pbc=True)
    return atoms.repeat(repeat) if repeat else atoms


def spacegroup_number(atoms: Atoms, symprec: float = 1e-3) -> int:
    import warnings

    import spglib

    cell = (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
    return int(dataset.number if hasattr(dataset, "number") else dataset["number"])


def gaussian_perturbation(atoms: Atoms, sigma: float, rng: np.random.Generator):
    """Copy of ``atoms`` displaced by N(0, sigma^2) per coordinate, and the displacements."""
    out = atoms.copy()
    delta = rng.normal(0.0, sigma, size=atoms.positions.shape)
    out.positions = atoms.positions + delta
    return out, delta


def mean_squared_displacement(delta: np.ndarray) -> float:
    """MSD from the ideal sites after removing the rigid mean shift (Å^2)."""
    delta = np.asarray(delta, float)
    centred = delta - delta.mean(axis=0)
    return float(np.mean(np.sum(centred ** 2, axis=1)))


def linear_fit(x, y) -> dict[str, float]:
    """Least-squares line y = intercept + slope x, with R^2."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - np.sum(residual ** 2) / total if total > 0 else float("nan")
    return {"slope": float(slope), "intercept": float(intercept), "r2": float(r2)}
