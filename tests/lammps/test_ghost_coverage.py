"""The ghost-coverage check on one rank: ghosts as periodic images of the owned atoms."""

import itertools

import numpy as np
import pytest

MPI = pytest.importorskip("mpi4py.MPI")

from lpfm_insitu.lammps.halo import ghost_coverage  # noqa: E402

#: a tetragonal lattice: spacing 1.1 across, 1 along z, so a reach of 3 puts the region's
#: z faces on lattice planes and its other faces between planes
SPACING = np.array([1.1, 1.1, 1.0])
L, CUT = 10 * SPACING, 3.5


def _lattice_with_images(cut=CUT):
    """The lattice filling its box, and every periodic image within ``cut`` of the
    owned atoms as ghosts."""
    grid = np.array(list(itertools.product(range(10), repeat=3)), dtype=float) * SPACING
    ghosts = []
    for shift in itertools.product((-1, 0, 1), repeat=3):
        if shift == (0, 0, 0):
            continue
        moved = grid + L * np.array(shift)
        ghosts.append(moved[np.all((moved >= -cut) & (moved <= L - SPACING + cut), axis=1)])
    return grid, np.concatenate(ghosts)


def _coverage(owned, ghosts, reach, box_hi):
    return ghost_coverage(MPI.COMM_SELF, np.concatenate([owned, ghosts]), len(owned), reach,
                          np.zeros(3), box_hi, (0.0, 0.0, 0.0), (True, True, True))


def test_owners_moved_by_a_deforming_box_before_their_ghosts_are_not_missing_ghosts():
    """`fix deform ... remap x` rescales owned atoms at end_of_step; their ghosts follow
    one step later. With a reach whose faces fall on lattice planes, the stale ghost
    copies sit a hair outside the region: that is not a thin shell."""
    owned, ghosts = _lattice_with_images()
    assert _coverage(owned, ghosts, 3.0, L).missing_total == 0
    squeeze = 1.0 - 1e-6  # one step of a 1%/ps ramp is 2e-5; ghosts lag by that
    moved = owned * np.array([1.0, 1.0, squeeze])
    box = L * np.array([1.0, 1.0, squeeze])
    assert _coverage(moved, ghosts, 3.0, box).missing_total == 0
    # a shell really too thin is still found, deforming box or not
    assert _coverage(moved, ghosts, CUT + 0.6, box).missing_total > 0
    assert _coverage(owned, ghosts, CUT + 0.6, L).missing_total > 0
