"""Geometric truth for the "real systems" section: where the surfaces, layers and
solid-liquid interfaces of a LAMMPS frame are, independently of any classifier.

- ``surface_distance``: each atom's distance to the free surface (OVITO's alpha-shape
  surface mesh, which also finds the inner surface of a void) and the surface atoms;
- ``atomic_layers``: atomic planes of a slab along its normal (gaps in the sorted
  coordinates), so that the outermost layer is known exactly;
- ``order_profile`` / ``interface_positions``: a crystal's structure factor at one of its
  in-plane reciprocal vectors, per slab along the normal. It is ~1 (times the Debye-Waller
  factor) in the crystal, ~1/sqrt(atoms per slab) in the liquid, and blind to a rigid
  shift, so its half-height crossings place the solid-liquid interfaces;
- ``with_vacuum``: the same atoms in a box whose vacuum is a given multiple of the slab;
- ``shell_closure``: the omega signature of the shock example's ``analyze_ptm.py``
  (number of neighbours before the largest gap in the sorted distances).
"""

from __future__ import annotations

import numpy as np


def contiguous(coords: np.ndarray, length: float) -> np.ndarray:
    """Periodic coordinates along one axis shifted so that the occupied stretch does not
    cross the boundary (the cut goes through the widest empty gap)."""
    coords = np.mod(np.asarray(coords, dtype=float), length)
    order = np.sort(coords)
    gaps = np.diff(np.concatenate([order, [order[0] + length]]))
    k = int(np.argmax(gaps))
    start = order[(k + 1) % len(order)]  # the first atom after the widest gap
    return np.mod(coords - start, length) + start


def with_vacuum(atoms, axis: int, factor: float):
    """A copy of a slab-like frame whose box along ``axis`` holds ``factor`` times the
    slab's thickness of vacuum, the atoms centred; the cell stays periodic.

    A frame open along ``axis`` (a dump with shrink-wrapped bounds, whose atoms may lie
    a little outside the box) is taken as it is; only a periodic one is unwrapped first
    (measured: unwrapping the shock frame, whose atoms span 45.02 of its 45.07 Å, cut
    it at an inner layer gap and laid its free end onto the wall layer, 0.70 Å apart)."""
    if factor <= 0:
        raise ValueError(f"the vacuum factor must be positive, got {factor}")
    cell = np.array(atoms.cell)
    if not np.allclose(cell[axis], np.eye(3)[axis] * cell[axis, axis]) or np.any(
            np.delete(cell[:, axis], axis)):
        raise ValueError("with_vacuum needs the slab normal along a cell vector "
                         "perpendicular to the other two (an orthogonal box along that axis)")
    out = atoms.copy()
    pos = out.get_positions()
    z = contiguous(pos[:, axis], cell[axis, axis]) if atoms.pbc[axis] else pos[:, axis]
    thickness = float(z.max() - z.min())
    length = thickness * (1.0 + factor)
    pos[:, axis] = z - z.min() + 0.5 * (length - thickness)
    cell[axis, axis] = length
    out.set_cell(cell)
    out.set_positions(pos)
    out.pbc = True
    return out


def surface_distance(atoms, probe_radius: float = 3.0):
    """(distance of each atom to the free surface in Å, surface-atom mask), from OVITO's
    alpha-shape surface with a probe sphere of ``probe_radius``: empty regions the probe
    fits in are outside (vacuum, a void), and the atoms on their boundary are the surface.
    An atom with no surface anywhere gets an infinite distance."""
    from ovito.io.ase import ase_to_ovito
    from ovito.modifiers import ConstructSurfaceModifier

    data = ase_to_ovito(atoms)
    data.apply(ConstructSurfaceModifier(radius=probe_radius, compute_distances=True,
                                        select_surface_particles=True))
    distance = np.asarray(data.particles["Surface Distance"], dtype=float)
    selected = np.asarray(data.particles["Selection"]) != 0
    if not selected.any():  # OVITO then reports a huge finite number
        distance = np.full(len(atoms), np.inf)
    return distance, selected


def atomic_layers(coords: np.ndarray, gap: float = 0.5) -> np.ndarray:
    """Layer index (0 at the low end) of each atom along a slab normal: a new layer starts
    wherever consecutive sorted coordinates are more than ``gap`` apart (thermal spread
    within a plane is ~0.1 Å at moderate temperature; planes are >= 1.2 Å apart)."""
    coords = np.asarray(coords, dtype=float)
    order = np.argsort(coords, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.diff(coords[order]) > gap)])
    layers = np.empty(len(coords), dtype=int)
    layers[order] = starts
    return layers


def outermost_layers(coords: np.ndarray, gap: float = 0.5) -> np.ndarray:
    """Mask of the atoms in the first and the last atomic layer of a slab."""
    layers = atomic_layers(coords, gap)
    return (layers == 0) | (layers == layers.max())


def order_profile(positions: np.ndarray, cell: np.ndarray, axis: int, k_vector,
                  bin_width: float) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres along ``axis``, |mean exp(i k.r)| per bin) over the periodic box."""
    positions = np.asarray(positions, dtype=float)
    length = float(cell[axis, axis])
    n_bins = max(int(round(length / bin_width)), 1)
    coords = np.mod(positions[:, axis], length)
    which = np.minimum((coords / length * n_bins).astype(int), n_bins - 1)
    phase = np.exp(1j * positions @ np.asarray(k_vector, dtype=float))
    total = np.bincount(which, weights=phase.real, minlength=n_bins) + 1j * np.bincount(
        which, weights=phase.imag, minlength=n_bins)
    counts = np.bincount(which, minlength=n_bins)
    values = np.where(counts > 0, np.abs(total) / np.maximum(counts, 1), 0.0)
    centres = (np.arange(n_bins) + 0.5) * length / n_bins
    return centres, values


def interface_positions(centres: np.ndarray, values: np.ndarray, length: float,
                        level: float | None = None) -> np.ndarray:
    """Where a periodic order profile crosses ``level`` (default: half-way between its
    liquid and crystal plateaus, the 10th and 90th percentiles), by linear interpolation."""
    values = np.asarray(values, dtype=float)
    if level is None:
        level = 0.5 * (np.percentile(values, 10) + np.percentile(values, 90))
    above = values >= level
    crossings = []
    for k in range(len(values)):
        j = (k + 1) % len(values)
        if above[k] != above[j]:
            step = centres[j] - centres[k] + (length if j == 0 else 0.0)
            t = (level - values[k]) / (values[j] - values[k])
            crossings.append((centres[k] + t * step) % length)
    return np.sort(np.array(crossings))


def periodic_distance_to_planes(coords: np.ndarray, planes: np.ndarray,
                                length: float) -> np.ndarray:
    """Distance along the axis from each coordinate to the nearest plane (periodic)."""
    coords = np.asarray(coords, dtype=float)[:, None]
    planes = np.asarray(planes, dtype=float)[None, :]
    if planes.size == 0:
        return np.full(coords.shape[0], np.inf)
    d = np.abs(coords - planes) % length
    return np.minimum(d, length - d).min(axis=1)


def coexistence_truth(atoms, axis: int, k_vector, bin_width: float):
    """(crystal mask, distance to the nearest solid-liquid interface) of each atom."""
    cell = np.array(atoms.cell)
    positions = atoms.get_positions()
    centres, values = order_profile(positions, cell, axis, k_vector, bin_width)
    length = float(cell[axis, axis])
    level = 0.5 * (np.percentile(values, 10) + np.percentile(values, 90))
    planes = interface_positions(centres, values, length, level)
    coords = np.mod(positions[:, axis], length)
    which = np.minimum((coords / length * len(values)).astype(int), len(values) - 1)
    crystal = values[which] >= level
    return crystal, periodic_distance_to_planes(coords, planes, length), (centres, values,
                                                                          planes)


def shell_closure(atoms, n_max: int = 16) -> np.ndarray:
    """Neighbours before the largest relative gap d(n+1)/d(n) in the sorted neighbour
    distances (n = 8..15): 12 in FCC and HCP, 14 in BCC; ideal omega has 11 on its 2d
    sites (two thirds) and 14 on its 1a sites."""
    from ovito.data import NearestNeighborFinder
    from ovito.io.ase import ase_to_ovito

    finder = NearestNeighborFinder(n_max, ase_to_ovito(atoms))
    _, vectors = finder.find_all()
    d = np.sort(np.linalg.norm(np.asarray(vectors), axis=2), axis=1)
    ratio = d[:, 8:] / d[:, 7:-1]
    return 8 + np.argmax(ratio, axis=1)
