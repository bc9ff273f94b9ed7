"""Run under ``mpirun -np 3``: the id-keyed halo exchange and the ghost-coverage check.

Every rank builds the same random periodic system, owns the atoms of its slab along
x (the last rank owns nothing), and takes as ghosts every periodic image within
``CUT`` of its slab, shuffled (images of its own atoms included, ids scrambled). The
exchange must reproduce brute-force answers; dropping one ghost must make
``ghost_coverage`` report it on every rank; a problem on one rank must raise on all.
Called by insitu_checks.py (or run alone).
"""

import itertools
import sys

import numpy as np
from mpi4py import MPI

from lpfm_insitu.lammps.errors import ErrorSync, InsituError
from lpfm_insitu.lammps.halo import build_halo, ghost_coverage

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
L = np.array([12.0, 9.0, 10.0])
CUT = 4.0
N = 300

rng = np.random.default_rng(42)
pos = rng.uniform(0, 1, (N, 3)) * L
ids = rng.permutation(np.arange(1, N + 1) * 7)  # scrambled, non-contiguous ids
n_owner_ranks = max(size - 1, 1)
edges = np.linspace(0, L[0], n_owner_ranks + 1)
owner = np.minimum(np.searchsorted(edges, pos[:, 0], side="right") - 1, n_owner_ranks - 1)


def subdomain(r, cut=CUT, drop=0):
    mine = np.flatnonzero(owner == r) if r < n_owner_ranks else np.zeros(0, int)
    lo = np.array([edges[r], 0, 0]) - cut if r < n_owner_ranks else None
    ghost_pos, ghost_ids = [], []
    if r < n_owner_ranks:
        hi = np.array([edges[r + 1], L[1], L[2]]) + cut
        for shift in itertools.product((-1, 0, 1), repeat=3):
            moved = pos + np.array(shift) * L
            inside = np.all((moved >= lo) & (moved <= hi), axis=1)
            if shift == (0, 0, 0):
                inside &= owner != r
            ghost_pos.append(moved[inside])
            ghost_ids.append(ids[inside])
    gp = np.concatenate(ghost_pos) if ghost_pos else np.zeros((0, 3))
    gi = np.concatenate(ghost_ids) if ghost_ids else np.zeros(0, int)
    order = np.random.default_rng(r + 100).permutation(len(gi))
    gp, gi = gp[order], gi[order]
    if drop:
        gp, gi = gp[drop:], gi[drop:]
    return (np.concatenate([pos[mine], gp]), np.concatenate([ids[mine], gi]), len(mine))


def main():
    sync = ErrorSync(comm.Dup(), timeout=20)
    positions, my_ids, n_local = subdomain(rank)
    halo = build_halo(sync.comm, my_ids, n_local, sync)
    by_id = dict(zip(ids.tolist(), range(N)))
    values = rng.normal(size=(N, 2))  # global per-atom values, same on every rank

    # forward: every ghost row gets its owner's value
    local_vals = values[[by_id[i] for i in my_ids[:n_local]]]
    full = halo.forward(local_vals)
    expect = values[[by_id[i] for i in my_ids]]
    assert np.allclose(full, expect), "forward mismatch"

    # reverse: each atom receives the sum of its rows over all ranks
    contrib = rng.normal(size=(len(my_ids), 2)) + rank
    summed = halo.reverse(contrib)
    per_atom = np.zeros((N, 2))
    np.add.at(per_atom, [by_id[i] for i in my_ids], contrib)
    total = np.zeros_like(per_atom)
    comm.Allreduce(per_atom, total)
    assert np.allclose(summed, total[[by_id[i] for i in my_ids[:n_local]]]), "reverse mismatch"

    # periodic images of own atoms are mapped locally
    assert np.all(halo.plan.ghost_owner >= 0)

    box = (np.zeros(3), L, (0.0, 0.0, 0.0), (True, True, True))
    cov = ghost_coverage(sync.comm, positions, n_local, CUT - 0.5, *box, sync=sync)
    assert cov.missing_total == 0, f"complete shell reported missing {cov}"
    cov = ghost_coverage(sync.comm, positions, n_local, CUT + 1.0, *box, sync=sync)
    assert cov.missing_total > 0, "too thin shell not detected"
    # drop ghosts on rank 0 only: every rank must see it
    dropped = subdomain(rank, drop=25 if rank == 0 else 0)
    cov = ghost_coverage(sync.comm, dropped[0], dropped[2], CUT - 0.5, *box, sync=sync)
    assert cov.missing_total > 0 and cov.ranks_missing == 1, f"missing ghosts not seen {cov}"
    assert (cov.missing_here > 0) == (rank == 0)

    # a problem on one rank raises the same error on all
    try:
        sync.check("rank 1 is unhappy" if rank == 1 else None)
    except InsituError as exc:
        assert exc.agreed and "rank 1 is unhappy" in str(exc), str(exc)
    else:
        raise AssertionError("no error raised")
    # duplicate ids are refused on every rank
    bad_ids = my_ids.copy()
    if rank == 0 and n_local:
        bad_ids[0] = 7  # an id owned by some atom
    try:
        build_halo(sync.comm, bad_ids, n_local, sync)
    except InsituError as exc:
        assert "id" in str(exc)
        refused = True
    else:
        refused = False
    assert all(comm.allgather(refused)), "duplicate ids must be refused on every rank"
    comm.Barrier()
    if rank == 0:
        print("ok  halo exchange and coverage check", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # noqa: BLE001 - any failure must end all ranks
        import traceback

        traceback.print_exc()
        print(f"rank {rank}: FAILED: {exc}", flush=True)
        sys.stdout.flush()
        comm.Abort(1)
