"""A per-atom length scale read from each atom's own neighbourhood, not from the box.

The model is trained on prototypes at one volume per atom (``REFERENCE_ATOMIC_VOLUME``),
so every input must be mapped onto that density. The box's volume per atom does this
only for a box the material fills: vacuum (a slab, a nanoparticle, a void, a shock's free
surface) makes the material look dilute, and a shock makes one part of the box denser
than another. Here each atom's volume is estimated locally:

1. ``L_i``: the mean distance to the atom's ``K_NEAREST`` nearest neighbours, a length
   that thermal noise barely moves (unlike the single nearest distance, ~10% low in a hot
   crystal and noisy per atom);
2. a Gaussian kernel density at the atom, with width ``KERNEL_WIDTH x L_i`` and a smooth
   truncation at ``KERNEL_TRUNCATION`` widths. By Poisson summation a Gaussian of width
   comparable to the neighbour distance sums any crystal's lattice to its mean density,
   whatever the prototype (measured on the 25 prototypes at 15 Å^3/atom: within 0.7%
   ideal, within 1.5% at 0.15 Å of noise), where a first-shell length would depend on the
   prototype (diamond's shell is short for its density, graphite's very short);
3. the atom's volume averaged with its neighbours' within ``SMOOTHING_RADIUS x L_i``,
   leaving out exposed (free-surface, isolated) atoms, whose kernel sees half a crystal;
   an exposed atom takes its scale from its unexposed neighbours (their values come from
   their owners, so a subdomain gives the periodic answer).

The scale is held fixed while a structure is denoised, so the score stays the gradient
of one scalar. The same kernel gives each atom's *openness*: the length of the kernel-
weighted mean bond vector over the kernel width. Any crystal site sits near a maximum of
its smoothed density (small openness); an atom at a free surface sees neighbours on one
side only (openness of order one). Atoms above ``SURFACE_OPENNESS``, and atoms with fewer
than ``K_NEAREST`` neighbours within the search (isolated ones), are reported unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.special import erf

#: Atomic volume (Å^3) every training prototype is scaled to; inputs are mapped onto it.
REFERENCE_ATOMIC_VOLUME = 15.0


def equivalent_nn_distance(atomic_volume: float) -> float:
    """The FCC nearest-neighbour distance at this volume per atom.

    A density-based length is unbiased for hot crystals, unlike the per-atom minimum
    neighbour distance, which thermal motion pulls ~10% low.
    """
    return float((np.sqrt(2.0) * atomic_volume) ** (1.0 / 3.0))


REFERENCE_NN_DISTANCE = equivalent_nn_distance(REFERENCE_ATOMIC_VOLUME)


def typical_scale(typical_distance: float) -> float:
    """The scale (model units per input unit) of an FCC crystal with this neighbour
    distance, as the box's density gives it."""
    return REFERENCE_NN_DISTANCE / float(typical_distance)


#: neighbours whose mean distance sets an atom's kernel width
K_NEAREST = 12
#: kernel width (standard deviation) in units of that mean distance
KERNEL_WIDTH = 0.7
#: the kernel is cut (smoothly: shifted to zero) at this many widths
KERNEL_TRUNCATION = 2.85
#: radius, in units of the mean distance, of the neighbourhood a volume is averaged over
SMOOTHING_RADIUS = 1.5
#: openness above which an atom is at a free surface (see ``surface_threshold`` notes)
SURFACE_OPENNESS = 0.25
#: the neighbour search reaches this many typical neighbour distances: the kernel of a
#: metal's atom reaches ~2.0 of them, diamond's 2.2 (its 12 nearest lie in two shells)
SEARCH_REACH = 2.4
#: the first, shorter search (a fraction of SEARCH_REACH): a hot metal's kernels end
#: within 2.1 typical distances, where the search holds two thirds of the edges
FIRST_SEARCH_FRACTION = 2.1 / 2.4
#: no atom's scale goes below this fraction of the scale the typical distance implies: an
#: isolated atom (gas, debris) would otherwise widen every rank's ghost shell
SCALE_FLOOR = 0.75


def kernel_reach(mean_distance: float) -> float:
    """How far (input units) the density kernel of an atom with this ``L_i`` reaches."""
    return KERNEL_TRUNCATION * KERNEL_WIDTH * mean_distance


def _kernel_integral(truncation: float) -> float:
    """Integral over space of ``exp(-r^2/2) - exp(-T^2/2)`` for ``r < T`` (unit width)."""
    t = truncation
    tail = np.exp(-0.5 * t * t)
    gauss = (2 * np.pi) ** 1.5 * (erf(t / np.sqrt(2)) - np.sqrt(2 / np.pi) * t * tail)
    return float(gauss - tail * 4.0 / 3.0 * np.pi * t ** 3)


_INTEGRAL = _kernel_integral(KERNEL_TRUNCATION)


def mean_neighbour_distance(sender: np.ndarray, lengths: np.ndarray, n_owned: int,
                            k: int = K_NEAREST) -> np.ndarray:
    """Mean distance from each of the first ``n_owned`` atoms to its ``k`` nearest
    neighbours (fewer where it has fewer; ``inf`` where it has none)."""
    owned = sender < n_owned
    centre, length = sender[owned], lengths[owned]
    if len(centre) and np.any(np.diff(centre) < 0):  # neighbour lists come sorted by centre
        order = np.argsort(centre, kind="stable")
        centre, length = centre[order], length[order]
    count = np.bincount(centre, minlength=n_owned)
    if not len(centre):
        return np.full(n_owned, np.inf)
    # each atom's distances as one padded row, so one partition finds every k-nearest set
    first = np.concatenate([[0], np.cumsum(count)[:-1]])
    table = np.full((n_owned, max(int(count.max()), k)), np.inf)
    table[centre, np.arange(len(centre)) - first[centre]] = length
    nearest = np.partition(table, k - 1, axis=1)[:, :k]
    used = np.minimum(count, k)
    total = np.where(np.isfinite(nearest), nearest, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(used > 0, total / np.maximum(used, 1), np.inf)


@dataclass
class Neighbours:
    """Every pair within a search's cutoff, as ``centre -> neighbour`` edges.

    ``vectors(selection)`` gives the bond vectors (centre to neighbour, input units) of the
    edges ``selection`` picks (an index or mask array), so only the edges that enter the
    kernel are ever measured; ``lengths`` may be None (then computed from the vectors).
    """

    centre: np.ndarray
    neighbour: np.ndarray
    lengths: np.ndarray | None
    vectors: Callable[[np.ndarray | slice], np.ndarray]

    def with_lengths(self) -> "Neighbours":
        if self.lengths is not None:
            return self
        return Neighbours(self.centre, self.neighbour,
                          np.linalg.norm(self.vectors(slice(None)), axis=1), self.vectors)


class LocalScale:
    """Per-atom scales (model units per input unit) and openness of a set of atoms."""

    def __init__(self, scale: np.ndarray, openness: np.ndarray, isolated: np.ndarray):
        self.scale = scale  # (n_all,): owners' values on their ghosts too
        self.openness = openness  # (n_owned,)
        self.isolated = isolated  # (n_owned,) bool: fewer than K_NEAREST neighbours found
        self.search_reach = 0.0  # the neighbour search behind them, which a caller may reuse
        self.search_graph = None

    @property
    def at_surface(self) -> np.ndarray:
        """Atoms no prototype describes: free-surface and isolated ones."""
        return (self.openness > SURFACE_OPENNESS) | self.isolated


def _search_covering_every_kernel(neighbours: Callable[[float], Neighbours], n_owned: int,
                                  search_reach: float
                                  ) -> tuple[Neighbours, np.ndarray, np.ndarray]:
    """The neighbours the scale needs, each owned atom's mean distance ``L_i``, and
    which owned atoms are isolated (fewer than ``K_NEAREST`` neighbours within
    ``search_reach``).

    The answer is defined by a search out to ``search_reach``, but a dense metal's kernels
    end near ``FIRST_SEARCH_FRACTION`` of it, and a search's cost grows as its reach
    cubed. So the first search is that short one; where it holds every owned atom's
    ``K_NEAREST`` neighbours and kernel, it is the answer (the same mean distances, kernel
    edges and smoothing neighbours, since all three lie inside), otherwise the search is
    repeated out to the largest kernel's reach or, for an atom short of neighbours,
    ``search_reach`` itself.
    """
    def isolated_in(found):
        owned = found.centre < n_owned
        return np.bincount(found.centre[owned], minlength=n_owned) < K_NEAREST

    first_reach = FIRST_SEARCH_FRACTION * search_reach
    found = neighbours(first_reach).with_lengths()
    if isolated_in(found).any():
        found = neighbours(search_reach).with_lengths()
        return (found, mean_neighbour_distance(found.centre, found.lengths, n_owned),
                isolated_in(found))
    none_isolated = np.zeros(n_owned, dtype=bool)  # as in any wider search
    mean_distance = mean_neighbour_distance(found.centre, found.lengths, n_owned)
    # the kernel test below is ``length < KERNEL_TRUNCATION * width``: a hair of margin
    # keeps rounding from putting a kernel's last edge outside the search
    needed = kernel_reach(float(mean_distance.max(initial=0.0))) * (1.0 + 1e-9)
    if needed < first_reach:
        return found, mean_distance, none_isolated
    found = neighbours(min(needed, search_reach)).with_lengths()
    # the K_NEAREST were inside the first search: the same mean distances
    return found, mean_distance, none_isolated


def estimate_local_scale(positions: np.ndarray, n_owned: int,
                         neighbours: Callable[[float], Neighbours],
                         forward: Callable[[np.ndarray], np.ndarray], search_reach: float,
                         reference_volume: float) -> LocalScale:
    """The local scale of every atom (owned ones computed, ghosts filled by ``forward``).

    ``neighbours(cutoff)`` returns the ``Neighbours`` of every atom within ``cutoff``
    (input units); it may be called twice (a short search first, see
    ``_search_covering_every_kernel``). ``search_reach`` must cover ``K_NEAREST``
    neighbours and the kernel of every owned atom; an atom whose kernel would reach past
    it is given its mean distance from what the search found.
    Collective over a subdomain (two ``forward`` calls), whatever the atom count.
    """
    found, mean_distance, isolated = _search_covering_every_kernel(neighbours, n_owned,
                                                                  search_reach)
    sender, receiver, lengths = found.centre, found.neighbour, found.lengths
    owned = sender < n_owned
    if owned.all():  # a whole periodic cell: no ghost rows to drop (saves edge-sized copies)
        owned = slice(None)
    # an isolated atom (gas, debris) has no kernel to speak of: give it the search's reach
    mean_distance = np.minimum(mean_distance, search_reach / (KERNEL_TRUNCATION * KERNEL_WIDTH))
    width = KERNEL_WIDTH * mean_distance

    centre, length = sender[owned], lengths[owned]
    w_centre = width[centre]
    inside = length < KERNEL_TRUNCATION * w_centre
    edges = np.arange(len(sender))[owned][inside]
    centre, length, w_centre = centre[inside], length[inside], w_centre[inside]
    vec = found.vectors(edges)
    tail = np.exp(-0.5 * KERNEL_TRUNCATION ** 2)
    weight = np.exp(-0.5 * (length / w_centre) ** 2) - tail
    density_sum = (1.0 - tail) + np.bincount(centre, weight, minlength=n_owned)  # self + rest
    volume = (_INTEGRAL * width ** 3) / density_sum
    first_moment = np.stack([np.bincount(centre, weight * vec[:, a], minlength=n_owned)
                             for a in range(3)], axis=1)
    openness = np.linalg.norm(first_moment, axis=1) / (width * density_sum)

    exposed = (openness > SURFACE_OPENNESS) | isolated
    # one exchange carries both: a ghost's volume and whether its owner is exposed
    every = forward(np.stack([volume, exposed.astype(float)], axis=1))
    every_volume, every_exposed = every[:, 0], every[:, 1] > 0.5
    near = length < SMOOTHING_RADIUS * mean_distance[centre]
    neighbour_of = receiver[edges[near]]
    # an exposed atom's kernel sees half a crystal: its volume would bias its neighbours,
    # and its own scale is taken from theirs (which also keeps its reach, and so every
    # rank's ghost shell, that of the material)
    counted = ~every_exposed[neighbour_of]
    centre_near = centre[near][counted]
    # float even when no atom has an unexposed neighbour (numpy gives an empty weighted
    # bincount integer type: a thin film or a small cluster then failed to classify)
    total = np.bincount(centre_near, every_volume[neighbour_of][counted],
                        minlength=n_owned).astype(np.float64)
    count = np.bincount(centre_near, minlength=n_owned).astype(float)
    keep_own = ~exposed | (count == 0)  # an atom with no unexposed neighbour keeps its own
    total += np.where(keep_own, volume, 0.0)
    count += keep_own
    smoothed = total / count
    scale = (reference_volume / smoothed) ** (1.0 / 3.0)
    floor = SCALE_FLOOR * (reference_volume * np.sqrt(2.0)) ** (1.0 / 3.0) * SEARCH_REACH / search_reach
    scale = np.maximum(scale, floor)
    every_scale = forward(scale[:, None])[:, 0]
    return LocalScale(every_scale, openness, isolated)
