"""Run under ``mpirun -np 2``: parallel results must equal the serial answer.

Usage: tracking_mpi.py OUT_DIR.  Every rank builds the same global data set
(``make_case``) and keeps its own slice, so the test process can rebuild the
serial answer with the same function.  Prints "ALL OK" on rank 0 at the end.
"""

import os
import sys

import numpy as np

PHASES = ("A_cI2_229_a", "A_hP2_194_c", "A_hP3_191_ad")
BOX = ([0.0, 0.0, 0.0], [50.0, 10.0, 10.0], None)
RULES = "appear:A_hP3_191_ad>0.3, confidence<2.5"
# Atoms per rank for each case (2 ranks): different sizes, and each rank empty once.
CASES = {"uneven": (37, 91), "empty_other": (60, 0), "empty_root": (0, 45)}


def make_case(name):
    """Per-rank data of one case (list over ranks); each rank has different labels."""
    sizes = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))  # stable across processes
    out, next_id = [], 1
    for rank, n in enumerate(sizes):
        probs = [0.7, 0.1, 0.1, 0.1] if rank == 0 else [0.1, 0.4, 0.3, 0.2]
        labels = rng.choice([0, 1, 2, -1], size=n, p=probs)
        ids = rng.permutation(np.arange(next_id, next_id + n)) * 2
        next_id += n
        x = rng.uniform(-5, 55, n)
        out.append(dict(
            ids=ids, types=rng.integers(1, 3, n),
            positions=np.column_stack([x, rng.uniform(0, 10, (n, 2))]),
            velocities=rng.normal(size=(n, 3)), labels=labels,
            confidence=rng.uniform(0, 5, n), ops=rng.normal(size=(n, len(PHASES))),
        ))
    return out


def concatenated(parts):
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def expect_error(fn, exc_type, comm, what):
    """``fn`` must raise ``exc_type`` on every rank (not hang, not pass)."""
    try:
        fn()
    except exc_type as exc:
        ok = True
        msg = str(exc)
    else:
        ok, msg = False, "no error"
    oks = comm.allgather(ok)
    assert all(oks), f"{what}: raised on ranks {oks}: {msg}"


def main(out_dir):
    from mpi4py import MPI

    from lpfm_insitu.lammps.tracking import as_lammps_variables
    from lpfm_insitu.tracking.statistics import reduce_phase_statistics, spatial_profile
    from lpfm_insitu.tracking.snapshot import write_snapshot
    from lpfm_insitu.tracking.timeseries import PhaseTimeSeries
    from lpfm_insitu.tracking.triggers import CheckpointTrigger, parse_rules

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    assert comm.Get_size() == 2, "run with -np 2"

    trigger = CheckpointTrigger(parse_rules(RULES, PHASES))
    ts = PhaseTimeSeries.open(os.path.join(out_dir, "ts.h5"), PHASES, {"model": "mpi-test"}, comm, profile_bins=5)
    for i, name in enumerate(CASES):
        parts = make_case(name)
        mine, full = parts[rank], concatenated(parts)
        st = reduce_phase_statistics(mine["labels"], mine["confidence"], mine["ops"], PHASES, comm)
        ref = reduce_phase_statistics(full["labels"], full["confidence"], full["ops"], PHASES)
        assert np.array_equal(st.counts, ref.counts) and st.n_atoms == ref.n_atoms, name
        assert np.isclose(st.mean_confidence, ref.mean_confidence), name
        assert np.allclose(st.mean_op, ref.mean_op, equal_nan=True), name
        assert np.allclose(st.mean_confidence_per_phase, ref.mean_confidence_per_phase, equal_nan=True)
        # bit-identical on all ranks (trigger decisions must agree)
        assert len({s.tobytes() for s in comm.allgather(np.r_[st.fractions, st.mean_confidence])}) == 1
        assert len({tuple(sorted(v.items())) for v in comm.allgather(as_lammps_variables(st))}) == 1

        prof = spatial_profile(mine["labels"], mine["positions"][:, 0], len(PHASES), 0.0, 50.0, 5, comm)
        prof_ref = spatial_profile(full["labels"], full["positions"][:, 0], len(PHASES), 0.0, 50.0, 5)
        assert np.array_equal(prof, prof_ref), name

        ts.append(100 * i, 0.1 * i, st, profile=prof, profile_edges=np.linspace(0, 50, 6))
        fired = trigger.update(100 * i, st)
        assert len({tuple(f) for f in comm.allgather(fired)}) == 1, "ranks disagree about triggers"
        files = []
        path = write_snapshot(os.path.join(out_dir, f"snap_{name}.h5"), 100 * i, 0.1 * i, BOX,
                              mine["ids"], mine["types"], mine["positions"], mine["velocities"],
                              mine["labels"], mine["confidence"], mine["ops"], PHASES,
                              {"case": name}, comm)
        files.append(path)
        if fired:
            ts.record_trigger(100 * i, 0.1 * i, "; ".join(fired), files)
            trigger.record_checkpoint(100 * i, st)
    ts.close()

    # -- errors must reach every rank, never hang ---------------------------
    mine = make_case("uneven")[rank]
    bad_labels = mine["labels"].copy()
    if rank == 1:
        bad_labels[0] = 7  # only rank 1 has bad data
    expect_error(lambda: reduce_phase_statistics(bad_labels, mine["confidence"], mine["ops"], PHASES, comm),
                 ValueError, comm, "bad labels on one rank (stats)")
    expect_error(lambda: spatial_profile(bad_labels, mine["positions"][:, 0], 3, 0.0, 50.0, 5, comm),
                 ValueError, comm, "bad labels on one rank (profile)")
    expect_error(lambda: write_snapshot(os.path.join(out_dir, "bad.h5"), 0, 0.0, BOX, mine["ids"], mine["types"],
                                        mine["positions"], mine["velocities"], bad_labels, mine["confidence"],
                                        mine["ops"], PHASES, {}, comm),
                 ValueError, comm, "bad labels on one rank (snapshot)")
    expect_error(lambda: write_snapshot(os.path.join(out_dir, "no_such_dir", "s.h5"), 0, 0.0, BOX, mine["ids"],
                                        mine["types"], mine["positions"], mine["velocities"], mine["labels"],
                                        mine["confidence"], mine["ops"], PHASES, {}, comm),
                 OSError, comm, "rank-0 I/O error (snapshot)")
    expect_error(lambda: PhaseTimeSeries.open(os.path.join(out_dir, "ts.h5"), PHASES[:2], {}, comm),
                 ValueError, comm, "phase list mismatch (time series)")
    expect_error(lambda: PhaseTimeSeries.open(os.path.join(out_dir, "no_such_dir", "ts.h5"), PHASES, {}, comm),
                 OSError, comm, "rank-0 I/O error (time series)")
    assert not os.path.exists(os.path.join(out_dir, "bad.h5"))

    comm.Barrier()
    if rank == 0:
        print("ALL OK", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
