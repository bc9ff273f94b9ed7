"""Synthetic training data: strained, noised prototype supercells (LPFM Eqs. 6-8).

A training structure is an ideal prototype supercell, deformed by a random
symmetric strain (so the model sees compressed, expanded, sheared and
shock-like uniaxially compressed crystals under the *same* label) and then
perturbed by isotropic Gaussian displacements ``x~ = x + sigma * eps`` with a
per-structure noise level ``sigma ~ U(0, sigma_max)``.  The clean positions
and ``eps`` are kept so denoising targets can be formed without unwrapping.
"""

from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np
from ase import Atoms

from .prototypes import PROTOTYPE_LABELS, build_prototype, nearest_neighbour_distance

__all__ = [
    "Sample",
    "STRAIN_SETTINGS",
    "SyntheticSampler",
    "add_noise",
    "apply_strain",
    "ideal_supercell",
    "make_supercell",
    "random_strain",
    "lattice_directions",
]

#: Noise scale relative to the fcc nearest-neighbour distance (≈0.36 Å at 15 Å^3/atom).
SIGMA_MAX_FRACTION_OF_FCC_NN = 0.13


def _widths(cell: np.ndarray) -> np.ndarray:
    """Perpendicular distances between opposite faces of the cell."""
    volume = abs(np.linalg.det(cell))
    crosses = [np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3]) for i in range(3)]
    return volume / np.linalg.norm(crosses, axis=1)


def _supercell_score(cell: np.ndarray, n_atoms: int, target_atoms: int) -> float:
    """Lower is better: non-cubicity plus relative deviation from the atom target.

    Cubicity is measured by the narrowest face-to-face width relative to
    V^(1/3) (1 for a cube), which penalises both elongated and strongly
    skewed cells — the ones that let an atom see its own periodic image
    at short range.
    """
    volume = abs(np.linalg.det(cell))
    compactness = _widths(cell).min() / volume ** (1.0 / 3.0)
    return (1.0 - compactness) + 0.5 * abs(n_atoms / target_atoms - 1.0)


def _length_ratio(cell: np.ndarray) -> float:
    lengths = np.linalg.norm(cell, axis=1)
    return float(lengths.max() / lengths.min())


def make_supercell(atoms: Atoms, target_atoms: int = 200) -> Atoms:
    """Repeat ``atoms`` diagonally into a roughly cubic cell of about ``target_atoms`` atoms.

    Diagonal repeats (n1, n2, n3) around the cube-filling ones are ranked by:
    atom count within [0.5, 1.5] x target first, then cell-length ratio below
    2, then :func:`_supercell_score` (cubicity and closeness to the target).
    Diagonal repeats keep the atom order of the unit cell (atom ``i`` of copy
    ``k`` is ``k * len(atoms) + i``), which makes the result easy to reason about.
    """
    n_unit = len(atoms)
    if n_unit == 0:
        raise ValueError("empty Atoms")
    lo, hi = 0.5 * target_atoms, 1.5 * target_atoms
    cell = atoms.cell[:]
    # A cube holding target_atoms has edge L; n_i ~ L / width_i reaches it.
    # Search a generous window around that instead of all n_i <= target.
    edge = (abs(np.linalg.det(cell)) * target_atoms / n_unit) ** (1.0 / 3.0)
    ideal = edge / _widths(cell)
    ranges = [
        range(max(1, int(np.floor(0.5 * x))), max(1, int(np.ceil(2.0 * x))) + 1) for x in ideal
    ]
    best, best_key = None, None
    for reps in itertools.product(*ranges):
        n_atoms = n_unit * int(np.prod(reps))
        supercell = cell * np.asarray(reps)[:, None]
        key = (
            not lo <= n_atoms <= hi,
            _length_ratio(supercell) >= 2.0,
            _supercell_score(supercell, n_atoms, target_atoms),
        )
        if best_key is None or key < best_key:
            best, best_key = reps, key
    return atoms.repeat(best)


@lru_cache(maxsize=None)
def _ideal_supercell_cached(label: str, atomic_volume: float, target_atoms: int) -> Atoms:
    candidates = []
    for primitive in (True, False):
        supercell = make_supercell(build_prototype(label, atomic_volume, primitive), target_atoms)
        cell = supercell.cell[:]
        key = (_length_ratio(cell) >= 2.0, _supercell_score(cell, len(supercell), target_atoms))
        candidates.append((key, not primitive, supercell))
    candidates.sort(key=lambda c: c[:2])
    return candidates[0][2]


def ideal_supercell(label: str, atomic_volume: float = 15.0, target_atoms: int = 200) -> Atoms:
    """Near-cubic ideal supercell of a prototype (a fresh copy; built once per arguments).

    Both the primitive and the conventional cell are tried because neither
    tiles well for every lattice (alpha-Mn wants the primitive bcc cell, a
    9-atom-tall Sm-type stacking wants the hexagonal one).
    """
    return _ideal_supercell_cached(label, float(atomic_volume), int(target_atoms)).copy()


def random_strain(
    rng: np.random.Generator,
    scale_range: tuple[float, float] = (0.90, 1.08),
    shear_std: float = 0.03,
    p_uniaxial: float = 0.3,
    uniaxial_range: tuple[float, float] = (-0.15, 0.05),
    directions: np.ndarray | None = None,
) -> np.ndarray:
    """Random symmetric deformation gradient F = s (I + e_sym [+ u n n^T]).

    ``s ~ U(scale_range)`` is a *linear* scale factor (volume scales as s^3).
    ``e_sym = (e + e^T) / 2`` with ``e_ij ~ N(0, shear_std)``: symmetric, so no
    rigid rotation is mixed in (the model is rotation invariant anyway).
    With probability ``p_uniaxial`` a uniaxial strain ``u ~ U(uniaxial_range)``
    along a random unit vector ``n`` is added: shocked crystals are compressed
    uniaxially by up to ~15 % and must keep their label. ``directions`` (rows), when
    given, are the axes ``n`` is drawn from instead of the whole sphere.
    """
    e = rng.normal(0.0, shear_std, size=(3, 3))
    deformation = np.eye(3) + 0.5 * (e + e.T)
    if rng.random() < p_uniaxial:
        if directions is None:
            n = rng.normal(size=3)
        else:
            n = np.asarray(directions[rng.integers(len(directions))], dtype=float)
        n /= np.linalg.norm(n)
        deformation += rng.uniform(*uniaxial_range) * np.outer(n, n)
    return rng.uniform(*scale_range) * deformation


def _strain_range(label: str, value) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"uniaxial_ranges[{label!r}] = {value!r}: give [lowest, highest] "
                         f"uniaxial strain, e.g. [-0.15, 0.12]") from None
    if not -1.0 < low <= high:
        raise ValueError(f"uniaxial_ranges[{label!r}] = {value!r}: need -1 < lowest <= highest")
    return low, high


def lattice_directions(cell) -> np.ndarray:
    """The cell's low-index directions as rows: a_i, a_i +- a_j, a_1 +- a_2 +- a_3.

    For a cubic supercell of a cubic lattice these are <100>, <110> and <111>.
    """
    a = np.asarray(cell, dtype=float)
    a = a / np.linalg.norm(a, axis=1)[:, None]
    rows = [a[0], a[1], a[2], a[0] + a[1], a[0] - a[1], a[0] + a[2], a[0] - a[2],
            a[1] + a[2], a[1] - a[2], a[0] + a[1] + a[2], a[0] + a[1] - a[2],
            a[0] - a[1] + a[2], -a[0] + a[1] + a[2]]
    return np.array(rows)


def apply_strain(atoms: Atoms, F: np.ndarray) -> Atoms:
    """Copy of ``atoms`` with cell vectors and positions mapped by x -> F x, then wrapped."""
    F = np.asarray(F, dtype=float)
    if F.shape != (3, 3):
        raise ValueError(f"F must be 3x3, got shape {F.shape}")
    strained = atoms.copy()
    strained.set_cell(atoms.cell[:] @ F.T, scale_atoms=False)
    strained.positions = atoms.positions @ F.T
    strained.wrap()
    return strained


def add_noise(
    positions: np.ndarray, sigma: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian displacement ``positions + sigma * eps``; returns ``(noisy, eps)``.

    ``eps`` is the unit-variance noise (the denoising target), not the
    displacement itself.  Noisy positions are deliberately not wrapped, so
    ``noisy - positions == sigma * eps`` exactly.
    """
    positions = np.asarray(positions, dtype=float)
    eps = rng.standard_normal(positions.shape)
    return positions + sigma * eps, eps


@dataclass
class Sample:
    """One synthetic training structure.

    ``label_index`` indexes :data:`PROTOTYPE_LABELS` (not the sampler's
    subset), one entry per atom.  ``atoms.positions == clean_positions +
    sigma * eps``.
    """

    atoms: Atoms
    clean_positions: np.ndarray
    label_index: np.ndarray
    sigma: float
    eps: np.ndarray = field(repr=False, default=None)
    label: str = ""


def _probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


class SyntheticSampler:
    """Class-balanced (or ``phase_weights``-weighted), seeded generator of strained and
    noised prototype supercells.

    Ideal supercells are built once per label (alpha-Mn and friends are slow
    to generate); everything random comes from one ``numpy`` generator, so a
    given seed reproduces the same sequence of samples.
    """

    def __init__(
        self,
        labels: Sequence[str] | None = None,
        atomic_volume: float = 15.0,
        target_atoms: int = 200,
        sigma_max: float | None = None,
        scale_range: tuple[float, float] = (0.90, 1.08),
        shear_std: float = 0.03,
        p_uniaxial: float = 0.3,
        uniaxial_range: tuple[float, float] = (-0.15, 0.05),
        seed: int | None = 0,
        uniaxial_exempt: Sequence[str] = (),
        uniaxial_ranges: Mapping[str, tuple[float, float]] | None = None,
        narrow_shear: Sequence[str] = (),
        narrow_shear_std: float = 0.015,
        phase_weights: Mapping[str, float] | None = None,
        p_lattice_axis: float = 0.0,
        low_noise_fraction: float = 0.0,
        low_noise_sigma_max: float = 0.06,
    ) -> None:
        self.labels = tuple(PROTOTYPE_LABELS if labels is None else labels)
        if not self.labels:
            raise ValueError("labels must not be empty")
        unknown = [label for label in self.labels if label not in PROTOTYPE_LABELS]
        if unknown:
            raise KeyError(f"unknown prototype(s) {unknown}; valid labels are: {', '.join(PROTOTYPE_LABELS)}")
        self.atomic_volume = float(atomic_volume)
        self.target_atoms = int(target_atoms)
        if sigma_max is None:
            fcc = build_prototype(PROTOTYPE_LABELS[0], self.atomic_volume)
            sigma_max = SIGMA_MAX_FRACTION_OF_FCC_NN * nearest_neighbour_distance(fcc)
        self.sigma_max = float(sigma_max)
        self.scale_range = tuple(scale_range)
        self.shear_std = float(shear_std)
        self.p_uniaxial = float(p_uniaxial)
        self.uniaxial_range = tuple(uniaxial_range)
        # Shocks in MD run along low-index directions, where a compressed cubic crystal is
        # tetragonal (FCC compressed along a cube axis is not bct In, which is stretched);
        # a random axis lands near one too rarely to teach that.
        self.p_lattice_axis = _probability("p_lattice_axis", p_lattice_axis)
        # sigma ~ U(0, sigma_max) leaves few nearly clean structures, yet denoising ends on
        # clean ones: FCC compressed along a cube axis and bct In differ clearly only there
        low_noise_fraction = _probability("low_noise_fraction", low_noise_fraction)
        if low_noise_fraction and not 0.0 < low_noise_sigma_max <= self.sigma_max:
            raise ValueError(f"low_noise_sigma_max must be in (0, sigma_max = "
                             f"{self.sigma_max:g}], got {low_noise_sigma_max!r}")
        self.low_noise_fraction = low_noise_fraction
        self.low_noise_sigma_max = float(low_noise_sigma_max)
        # Prototypes that are a uniaxial strain away from another one (bct In is FCC
        # stretched 7.6 % along a cube axis) would be relabelled by that strain: they get
        # no uniaxial augmentation, or the two classes overlap and the model merges them.
        self.uniaxial_exempt = frozenset(uniaxial_exempt)
        # A lattice that forms under strain keeps some (omega from HCP under a ramp along
        # c is stretched along its own c, where the network read A15): such phases may
        # get a range of their own, stretch included, where no other lattice lies.
        self.uniaxial_ranges = {str(k): _strain_range(k, v)
                                for k, v in (uniaxial_ranges or {}).items()}
        # Shocked HCP is strained anisotropically by 15-25% (PTM's deformation gradient in
        # the shock demo), so most lattices need a wide shear; FCC and bct In, one
        # tetragonal strain apart, keep a narrow one or their classes overlap.
        self.narrow_shear = frozenset(narrow_shear)
        self.narrow_shear_std = float(narrow_shear_std)
        for name, group in (("uniaxial_exempt", self.uniaxial_exempt),
                            ("uniaxial_ranges", frozenset(self.uniaxial_ranges)),
                            ("narrow_shear", self.narrow_shear)):
            bad = sorted(group - set(PROTOTYPE_LABELS))
            if bad:
                raise KeyError(f"{name} names unknown prototype(s) {bad}")
        self.label_probabilities = self._label_probabilities(phase_weights or {})
        self.rng = np.random.default_rng(seed)
        self._ideal: dict[str, Atoms] = {}

    def _label_probabilities(self, phase_weights: Mapping[str, float]) -> np.ndarray | None:
        # Hard pairs (FCC and bct In, one tetragonal strain apart) can be drawn more often
        # than the rest; None keeps the uniform draw (and the random stream) of earlier runs.
        if not phase_weights:
            return None
        outside = sorted(set(phase_weights) - set(self.labels))
        if outside:
            raise KeyError(f"phase_weights names prototype(s) {outside} that are not among "
                           f"the sampled labels")
        weights = np.ones(len(self.labels))
        for label, weight in phase_weights.items():
            number = isinstance(weight, (int, float, np.number)) and not isinstance(weight, bool)
            if not (number and np.isfinite(weight) and weight > 0):
                raise ValueError(f"phase_weights[{label!r}] = {weight!r}: a sampling weight "
                                 f"must be a positive number (1 is the default weight)")
            weights[self.labels.index(label)] = float(weight)
        return weights / weights.sum()

    def ideal(self, label: str) -> Atoms:
        """Cached ideal (unstrained, noiseless) supercell of ``label``; do not modify."""
        if label not in self._ideal:
            self._ideal[label] = ideal_supercell(label, self.atomic_volume, self.target_atoms)
        return self._ideal[label]

    def sample_one(self, label: str | None = None) -> Sample:
        """Draw one structure, of ``label`` or of a uniformly chosen label."""
        rng = self.rng
        if label is None and self.label_probabilities is None:
            label = self.labels[rng.integers(len(self.labels))]
        elif label is None:
            label = self.labels[rng.choice(len(self.labels), p=self.label_probabilities)]
        p_uniaxial = 0.0 if label in self.uniaxial_exempt else self.p_uniaxial
        shear_std = self.narrow_shear_std if label in self.narrow_shear else self.shear_std
        directions = None
        if self.p_lattice_axis and rng.random() < self.p_lattice_axis:
            directions = lattice_directions(self.ideal(label).cell)
        F = random_strain(rng, self.scale_range, shear_std, p_uniaxial,
                          self.uniaxial_ranges.get(label, self.uniaxial_range), directions)
        strained = apply_strain(self.ideal(label), F)
        clean = strained.positions.copy()
        sigma_max = self.sigma_max
        # no extra draw when off, so the random stream of earlier configs is unchanged
        if self.low_noise_fraction and rng.random() < self.low_noise_fraction:
            sigma_max = self.low_noise_sigma_max
        sigma = float(rng.uniform(0.0, sigma_max))
        noisy, eps = add_noise(clean, sigma, rng)
        strained.positions = noisy
        strained.pbc = True
        strained.info["prototype"] = label
        strained.info["sigma"] = sigma
        index = PROTOTYPE_LABELS.index(label)
        return Sample(
            atoms=strained,
            clean_positions=clean,
            label_index=np.full(len(strained), index, dtype=np.int64),
            sigma=sigma,
            eps=eps,
            label=label,
        )

    def sample(self, n: int) -> list[Sample]:
        """Draw ``n`` structures, each label with equal probability unless weighted."""
        return [self.sample_one() for _ in range(int(n))]


#: The sampler's elastic-augmentation keywords (a training config's ``strain`` section):
#: every constructor argument but those the config sets elsewhere.
STRAIN_SETTINGS = frozenset(inspect.signature(SyntheticSampler).parameters) - {
    "labels", "atomic_volume", "target_atoms", "sigma_max", "seed", "phase_weights",
    "low_noise_fraction", "low_noise_sigma_max"}
