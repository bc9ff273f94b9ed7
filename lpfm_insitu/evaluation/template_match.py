"""Which ideal neighbour shell each atom's neighbours match best: a model-free check.

Polyhedral template matching (PTM) in the form any prototype site can use: for every
atom, its k nearest neighbour vectors (k = the template's coordination), scaled to unit
mean length, are matched to a template's (the ideal first shell of one site of a
prototype, built with :func:`lpfm_insitu.training.prototypes.build_prototype`) by the rotation and
one-to-one assignment that minimise the RMSD. PTM itself has no omega template; this
one takes any site of any prototype, so the two sites of omega (1a: 14 neighbours, 2d:
11) can be checked beside HCP, BCC and FCC.

The rotation search is exhaustive over anchor correspondences (the atom's nearest
neighbour and one of the next three, against every ordered pair of template vectors),
scored with a many-to-one nearest-vector cost (the nearest neighbour goes to one
vector of each class of equivalent ones), then refined by Hungarian assignment and
Kabsch rotation. The search is meant for denoised or cold positions; on hot ones the
RMSDs grow for every template alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list
from scipy.optimize import linear_sum_assignment

from ..training.prototypes import BCC, FCC, HCP, OMEGA, build_prototype, common_name

#: the phases the Ti alpha -> omega example compares, short names for reports
DEFAULT_PHASES = {label: common_name(label) for label in (HCP, OMEGA, BCC, FCC)}


@dataclass(frozen=True)
class Template:
    """The ideal first shell of one site: ``vectors`` (k, 3), unit mean length."""

    name: str       # e.g. "omega-1" (second distinct site of omega)
    phase: str      # AFLOW label of the prototype
    vectors: np.ndarray


def _first_shell(distances: np.ndarray, k_min: int = 8, k_max: int = 16) -> int:
    """Neighbour count before the largest relative gap among the k_min..k_max nearest."""
    d = np.sort(distances)[: k_max + 1]
    ratio = d[k_min:] / d[k_min - 1:-1]
    return k_min + int(np.argmax(ratio))


def site_templates(phase: str, short: str | None = None) -> list[Template]:
    """One template per distinct first shell of ``phase`` (omega: two, hcp/bcc/fcc: one)."""
    atoms = build_prototype(phase, primitive=False).repeat(3)
    nn = float(np.min(neighbor_list("d", atoms, 6.0)))
    i, vec = neighbor_list("iD", atoms, 2.0 * nn)
    templates: list[Template] = []
    seen: list[np.ndarray] = []
    for site in range(len(atoms) // 27):
        v = vec[i == site]
        d = np.linalg.norm(v, axis=1)
        order = np.argsort(d)
        k = _first_shell(d)
        shell = v[order[:k]]
        signature = np.sort(d[order[:k]]) / d[order[:k]].mean()
        if any(len(s) == k and np.allclose(s, signature, atol=1e-6) for s in seen):
            continue
        seen.append(signature)
        name = short or phase
        templates.append(Template(f"{name}-{len(templates)}", phase,
                                  shell / np.linalg.norm(shell, axis=1).mean()))
    if len(templates) == 1:
        templates[0] = Template(short or phase, phase, templates[0].vectors)
    return templates


def default_templates(phases: dict[str, str] = DEFAULT_PHASES) -> list[Template]:
    return [t for phase, short in phases.items() for t in site_templates(phase, short)]


def _frames(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Orthonormal frames (..., 3, 3), columns e1 || u, e2 in the (u, v) plane."""
    e1 = u / np.linalg.norm(u, axis=-1, keepdims=True)
    w = v - np.sum(v * e1, axis=-1, keepdims=True) * e1
    e2 = w / np.maximum(np.linalg.norm(w, axis=-1, keepdims=True), 1e-12)
    return np.stack([e1, e2, np.cross(e1, e2)], axis=-1)


def _kabsch(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Rotation R (3, 3) minimising |p R^T - t| (no reflection)."""
    u, _, vt = np.linalg.svd(p.T @ t)
    s = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    return (u @ s @ vt).T


def _orbit_representatives(template: np.ndarray) -> list[int]:
    """One vector per class of equivalent template vectors (same angles to all others).

    The rotation search may send the atom's nearest neighbour to one vector per class:
    the site's point group maps the others of the class onto it.
    """
    cos = np.round(template @ template.T, 6)
    signatures = [tuple(np.sort(row)) for row in cos]
    reps: dict[tuple, int] = {}
    for a, sig in enumerate(signatures):
        reps.setdefault(sig, a)
    return sorted(reps.values())


def _match(shells: np.ndarray, template: np.ndarray, refine: int = 3) -> np.ndarray:
    """RMSD (n,) of each atom's shell (n, k, 3), unit mean length, against one template."""
    n, k, _ = shells.shape
    norms = np.linalg.norm(template, axis=1)
    cos = (template @ template.T) / np.outer(norms, norms)
    pairs = [(a, b) for a in _orbit_representatives(template / norms[:, None])
             for b in range(k) if a != b and abs(cos[a, b]) < 0.98]
    # |R p - t|^2 = |p|^2 + |t|^2 - 2 p.(R^T t): only the dot products depend on R
    p2 = (shells ** 2).sum(-1)                                               # (n, k)
    t2 = (template ** 2).sum(-1)                                             # (k,)
    best = np.full(n, np.inf)
    best_rot = np.tile(np.eye(3), (n, 1, 1))
    for j in (1, 2):
        atom_frames = _frames(shells[:, 0], shells[:, j])                    # (n, 3, 3)
        for a, b in pairs:
            rot = _frames(template[a], template[b]) @ np.swapaxes(atom_frames, 1, 2)
            dots = shells @ (np.swapaxes(rot, 1, 2) @ template.T)            # (n, k, k)
            cost = (t2[None, None, :] - 2.0 * dots).min(axis=2).sum(axis=1)
            better = cost < best
            best[better], best_rot[better] = cost[better], rot[better]
    rmsd = np.empty(n)
    for m in range(n):
        rot = best_rot[m]
        for _ in range(refine):
            moved = shells[m] @ rot.T
            d2 = ((moved[:, None, :] - template[None]) ** 2).sum(-1)
            rows, cols = linear_sum_assignment(d2)
            rot = _kabsch(shells[m][rows], template[cols])
        moved = shells[m] @ rot.T
        d2 = ((moved[:, None, :] - template[None]) ** 2).sum(-1)
        rows, cols = linear_sum_assignment(d2)
        rmsd[m] = float(np.sqrt(d2[rows, cols].mean()))
    return rmsd


def neighbour_shells(atoms: Atoms, k: int) -> np.ndarray:
    """The k nearest neighbour vectors of every atom (n, k, 3), nearest first, unit mean."""
    volume = atoms.get_volume() / len(atoms)
    cutoff = 1.6 * volume ** (1.0 / 3.0)
    while True:
        i, vec = neighbor_list("iD", atoms, cutoff)
        counts = np.bincount(i, minlength=len(atoms))
        if counts.min() >= k:
            break
        cutoff *= 1.2
    d = np.linalg.norm(vec, axis=1)
    order = np.lexsort((d, i))
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    idx = order[start[:, None] + np.arange(k)[None, :]]
    shells = vec[idx]
    return shells / np.linalg.norm(shells, axis=2).mean(axis=1)[:, None, None]


def shell_sizes(atoms: Atoms, k_min: int = 8, k_max: int = 16) -> np.ndarray:
    """Every atom's first-shell size: neighbours before the largest relative gap in its
    k_min..k_max nearest distances (ideal omega: 14 at 1a, 11 at 2d; hcp, fcc: 12; bcc: 14)."""
    shells = neighbour_shells(atoms, k_max + 1)
    d = np.linalg.norm(shells, axis=2)
    ratio = d[:, k_min:] / d[:, k_min - 1:-1]
    return k_min + np.argmax(ratio, axis=1)


def match_templates(atoms: Atoms, templates: list[Template] | None = None) -> dict:
    """Per-atom RMSD against every template; ``best`` is the index of the smallest.

    Returns {"names": [...], "phases": [...], "rmsd": (n, T), "best": (n,)}.
    """
    templates = default_templates() if templates is None else templates
    rmsd = np.empty((len(atoms), len(templates)))
    shells: dict[int, np.ndarray] = {}
    for col, template in enumerate(templates):
        k = len(template.vectors)
        if k not in shells:
            shells[k] = neighbour_shells(atoms, k)
        rmsd[:, col] = _match(shells[k], template.vectors)
    return {"names": [t.name for t in templates], "phases": [t.phase for t in templates],
            "rmsd": rmsd, "best": np.argmin(rmsd, axis=1)}
