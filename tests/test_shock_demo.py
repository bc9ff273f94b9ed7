"""The shortened shock demo (``lpfm demo --quick``) on 2 MPI ranks with the shipped model.

BCC Fe (2,560 atoms, Fe_mm.eam.fs, as in ``in.shock_md``) is shocked along [001] by a
momentum mirror for 1 ps while the default model classifies it every 100 steps over Fe's
phases (bcc, hcp, fcc). The run must detect the transformation behind the shock front on
the fly: the parent BCC is gone next to the wall and stays ahead of it; HCP
(A_hP2_194_c) appears there and a checkpoint trigger fires on it (snapshot from the
hook, LAMMPS restart from the input loop); the order-parameter columns name the
shocked material close-packed (HCP or FCC, PTM's reading of it); the plots are drawn.
Much of the hot, distorted shocked region is labelled unknown (PTM with its RMSD
cutoff calls two thirds of it "Other"), so the HCP label fraction stays small.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.mpi

HCP, BCC, FCC = "A_hP2_194_c", "A_cI2_229_a", "A_cF4_225_a"
N_ATOMS = 2560


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    from lpfm_insitu.cli.demo import run_demo

    workdir = tmp_path_factory.mktemp("demo")
    start = time.perf_counter()
    code = run_demo(n_ranks=2, workdir=workdir, quick=True, timeout=900)
    assert code == 0, f"lpfm demo --quick failed; see {workdir}/log.lammps"
    return workdir, time.perf_counter() - start


def test_quick_demo_detects_the_transformation_and_checkpoints(quick_demo):
    from lpfm_insitu.tracking.snapshot import read_snapshot
    from lpfm_insitu.tracking.timeseries import read_time_series

    workdir, seconds = quick_demo
    data = read_time_series(workdir / "track.h5")
    phases = data["phases"]
    fr = np.asarray(data["fractions"])
    assert data["step"].tolist() == list(range(100, 1001, 100))
    np.testing.assert_allclose(fr.sum(axis=1), 1.0, atol=1e-12)
    assert (data["n_atoms"] == N_ATOMS).all()
    hcp, bcc = fr[:, phases.index(HCP)], fr[:, phases.index(BCC)]
    # the parent phase gives way ...
    assert bcc[0] > 0.85 and bcc[-1] < bcc[0] - 0.3, bcc
    # ... and the new one appears, from nothing
    assert hcp[0] < 0.01 and hcp.max() > 0.05, hcp
    # the profile puts both next to the wall (the shocked end, low z): no BCC left
    # there, BCC ahead of it, HCP only there
    prof = np.asarray(data["profile"][-1])
    filled = np.flatnonzero(prof.sum(axis=1) > 0)
    low, high = filled[: len(filled) // 3], filled[-len(filled) // 3:]
    assert prof[low, phases.index(BCC)].mean() < 0.1
    assert prof[high, phases.index(BCC)].mean() > 0.5
    assert prof[low, phases.index(HCP)].mean() > prof[high, phases.index(HCP)].mean() + 0.05

    trig = data["triggers"]
    assert len(trig["step"]) >= 1
    # descriptions name phases as users do: "appear:hcp>0.05 (hcp fraction 0.08)"
    appear = [k for k, d in enumerate(trig["description"]) if "appear:hcp>" in d]
    assert appear, trig["description"]
    k = appear[0]
    step = int(trig["step"][k])
    # it fired at the first classification where the rule held and no cooldown blocked it
    row = data["step"].tolist().index(step)
    assert hcp[row] > 0.05
    snapshot, restart = trig["files"][k]
    assert (workdir / restart).is_file(), "the input loop did not write the LAMMPS restart"
    snap = read_snapshot(workdir / snapshot)
    assert snap["step"] == step and len(snap["ids"]) == N_ATOMS
    np.testing.assert_array_equal(np.bincount(np.where(snap["labels"] < 0, len(phases) - 1,
                                                       snap["labels"]),
                                              minlength=len(phases)), data["counts"][row])
    log = (workdir / "log.lammps").read_text()
    assert f"lpfm_insitu: step {step}: checkpoint for " in log
    assert f"Fix halt condition for fix-id lpfm_halt met on step {step}" in log

    for name in ("track_fractions.png", "track_profile_fractions.png",
                 "track_profile_dominant.png"):
        assert (workdir / "plots" / name).stat().st_size > 10_000
    header = [line for line in (workdir / "shock.dump").read_text().splitlines()
              if line.startswith("ITEM: ATOMS")][0]
    assert header.endswith("i_lpfm_phase d_lpfm_conf d2_lpfm_op[1] d2_lpfm_op[2] "
                           "d2_lpfm_op[3]"), header
    # the order parameters (one per candidate, bcc hcp fcc) of the last frame: within
    # 32 Å of the wall their argmax is close-packed, as PTM reads the product
    from ase.io import read

    frame = read(workdir / "shock.dump", format="lammps-dump-text", index=-1)
    ops = np.stack([frame.arrays[f"d2_lpfm_op[{k}]"] for k in (1, 2, 3)], axis=1)
    z = frame.positions[:, 2]
    near_wall = z - z.min() < 32.0
    close_packed = np.isin(ops[near_wall].argmax(axis=1), (1, 2)).mean()
    assert close_packed > 0.6, close_packed
    print(f"quick demo: {seconds:.0f} s; hcp {hcp[0]:.3f} -> {hcp[-1]:.3f}, bcc {bcc[0]:.3f} "
          f"-> {bcc[-1]:.3f}, fcc -> {fr[-1, phases.index(FCC)]:.3f}; checkpoints at "
          f"{trig['step'].tolist()}")
