"""Calibrating the confidence below which an atom is labelled ``unknown``.

No prototype describes a liquid, so the model is asked how confident it is on dense
disordered packings (random positions pushed apart by a soft repulsion: liquid-like
first-neighbour distances with no crystalline order). The threshold is the confidence
that marks the requested fraction of those atoms unknown.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from .graph import periodic_graph
from .inference import REFERENCE_ATOMIC_VOLUME, REFERENCE_NN_DISTANCE


def disordered_packing(n_atoms: int, rng: np.random.Generator,
                       atomic_volume: float = REFERENCE_ATOMIC_VOLUME,
                       min_distance_fraction: float = 0.85, iterations: int = 200) -> Atoms:
    """A periodic, dense, disordered packing at the given density."""
    side = (n_atoms * atomic_volume) ** (1.0 / 3.0)
    cell = np.eye(3) * side
    positions = rng.uniform(0, side, size=(n_atoms, 3))
    d0 = min_distance_fraction * REFERENCE_NN_DISTANCE * (atomic_volume / REFERENCE_ATOMIC_VOLUME) ** (1 / 3)
    for _ in range(iterations):
        graph = periodic_graph(positions, cell, True, d0)
        if graph.n_edges == 0:
            break
        i, j = graph.edge_index
        vec = positions[j] - positions[i] + graph.shifts
        dist = np.linalg.norm(vec, axis=1, keepdims=True)
        push = 0.25 * (d0 - dist) * vec / np.maximum(dist, 1e-9)
        move = np.zeros_like(positions)
        np.add.at(move, i, -push)
        positions = (positions + move) % side
    return Atoms(f"Cu{n_atoms}", positions=positions, cell=cell, pbc=True)


def calibrate_threshold(model, quantile: float = 0.95, *, n_structures: int = 4,
                        n_atoms: int = 250, seed: int = 0, denoise_steps: int = 0) -> float:
    """Confidence below which ``quantile`` of disordered atoms fall."""
    rng = np.random.default_rng([seed, 7919])
    confidences = []
    for _ in range(n_structures):
        atoms = disordered_packing(n_atoms, rng)
        result = model.classify_atoms(atoms, denoise_steps=denoise_steps)
        confidences.append(result.confidence)
    return float(np.quantile(np.concatenate(confidences), quantile))
