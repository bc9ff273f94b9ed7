"""What every cost figure is measured with: the test crystal, the model's view of it,
best-of-N timing and the machine's load.

``lpfm bench`` (throughput, gpu) and ``lpfm eval``'s cost section both time the model on
a Gaussian-perturbed FCC crystal through these, so their figures are taken the same way.
"""

from __future__ import annotations

import os
import time

import numpy as np

#: Gaussian displacement of the test crystal's atoms (Å, input units).
SIGMA = 0.1


def perturbed_crystal(unit_cell, repeats, seed: int = 3, sigma: float = SIGMA):
    """``unit_cell`` repeated, every atom displaced by a Gaussian of ``sigma``."""
    atoms = unit_cell.repeat(repeats)
    atoms.positions += np.random.default_rng(seed).normal(0, sigma, atoms.positions.shape)
    return atoms


def in_model_units(model, atoms):
    """``(positions, cell, n_atoms, candidates)`` as the model sees ``atoms``: lengths in
    model units at the crystal's density, every phase a candidate."""
    n = len(atoms)
    scale = model.length_scale(atomic_volume=atoms.get_volume() / n)
    return (atoms.positions * scale, np.asarray(atoms.cell) * scale, n,
            np.arange(len(model.phases)))


def timed_calls(fn, repeats: int, warmup: int = 0, sync=None) -> list[tuple[float, object]]:
    """``(seconds, result)`` of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones;
    ``sync`` (a device's synchronise) runs before the clock starts and before it stops."""
    for _ in range(warmup):
        fn()
    calls = []
    for _ in range(repeats):
        if sync is not None:
            sync()
        start = time.perf_counter()
        out = fn()
        if sync is not None:
            sync()
        calls.append((time.perf_counter() - start, out))
    return calls


def best_time(fn, repeats: int, warmup: int = 0, sync=None) -> tuple[float, object]:
    """The fastest of :func:`timed_calls`, and the last call's result."""
    calls = timed_calls(fn, repeats, warmup, sync)
    return min(seconds for seconds, _ in calls), calls[-1][1]


def load_average(digits: int | None = None) -> list[float]:
    """The 1, 5 and 15 minute load averages (empty where the system has none)."""
    try:
        load = [float(x) for x in os.getloadavg()]
    except OSError:
        return []
    return load if digits is None else [round(x, digits) for x in load]
