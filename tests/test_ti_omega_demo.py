"""The shortened Ti alpha -> omega example (``lpfm demo --example ti --quick``), 2 MPI ranks.

HCP Ti (288 atoms, Ti.meam.spline) is compressed along c by a ramp while the default model
classifies it every 250 steps in situ (6 % along c: no
transformation yet, the machinery only); a last pass denoises and exports the displacement.
The in-situ answers on the last dumped frame must equal ``lpfm classify`` on that frame
(step 0 and after the denoising steps), the time series must start from HCP, and the
demo's model-free check must run on the last frame.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from ase.io import read

from lpfm_insitu.lammps.launch import lammps_environment

pytestmark = pytest.mark.mpi

HCP, OMEGA = "A_hP2_194_c", "A_hP3_191_ad"
CANDIDATES = "A_cI2_229_a,A_hP2_194_c,A_cF4_225_a,A_hP3_191_ad"
N_ATOMS = 288
LAST_STEP = 1000


@pytest.fixture(scope="module")
def quick_ti(tmp_path_factory):
    from lpfm_insitu.cli.demo import run_demo

    workdir = tmp_path_factory.mktemp("ti_demo")
    start = time.perf_counter()
    code = run_demo(n_ranks=2, workdir=workdir, quick=True, timeout=900, example="ti")
    assert code == 0, f"lpfm demo --example ti --quick failed; see {workdir}/log.lammps"
    return workdir, time.perf_counter() - start


def _classify(workdir, output, *extra):
    cmd = [sys.executable, "-m", "lpfm_insitu.cli.main", "classify", "ti_omega.dump",
           "--candidates", CANDIDATES, "--output", output, *extra]
    result = subprocess.run(cmd, cwd=workdir, env=lammps_environment(), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return read(workdir / output, index=-1)


def test_time_series_starts_from_hcp_and_tracks_every_250_steps(quick_ti):
    from lpfm_insitu.tracking.timeseries import read_time_series

    workdir, seconds = quick_ti
    data = read_time_series(workdir / "track.h5")
    fr = np.asarray(data["fractions"])
    assert data["step"].tolist() == list(range(250, LAST_STEP + 1, 250))
    assert (data["n_atoms"] == N_ATOMS).all()
    # time counts from the start of the ramp (2 fs steps), not of the equilibration
    np.testing.assert_allclose(data["time"], 0.002 * data["step"], atol=1e-9)
    np.testing.assert_allclose(fr.sum(axis=1), 1.0, atol=1e-12)
    assert fr[0, data["phases"].index(HCP)] > 0.95, fr[0]
    # (no track_profile_fractions.png: nothing but the parent phase appears in 1,000 steps)
    for name in ("track_fractions.png", "track_profile_dominant.png", "ptm_vs_model.png"):
        assert (workdir / "plots" / name).stat().st_size > 10_000
    last = {p: round(float(f), 3) for p, f in zip(data["phases"], fr[-1]) if f > 0}
    print(f"quick Ti demo: {seconds:.0f} s; last fractions {last}")


def test_insitu_labels_equal_offline_classify_on_the_last_frame(quick_ti):
    workdir, _ = quick_ti
    insitu = read(workdir / "ti_omega.dump", index=-1, format="lammps-dump-text")
    assert insitu.info["timestep"] == LAST_STEP
    offline = _classify(workdir, "offline.xyz")
    np.testing.assert_array_equal(offline.arrays["lpfm_phase"],
                                  insitu.arrays["i_lpfm_phase"])
    np.testing.assert_allclose(offline.arrays["lpfm_conf"], insitu.arrays["d_lpfm_conf"],
                               rtol=0, atol=1e-4)
    # the denoised pass of the last step against `lpfm classify --denoise-steps 8`
    denoised = _classify(workdir, "offline8.xyz", "--denoise-steps", "8")
    np.testing.assert_array_equal(denoised.arrays["lpfm_phase"],
                                  insitu.arrays["i_lpfmd_phase"])
    disp = np.column_stack([insitu.arrays[f"d2_lpfmd_disp[{k}]"] for k in (1, 2, 3)])
    assert np.abs(disp).max() > 0.01, "denoising should move the atoms"
    np.testing.assert_allclose(denoised.arrays["lpfm_disp"], disp, rtol=0, atol=1e-4)


def test_model_free_check_ran_on_the_last_frame(quick_ti):
    workdir, _ = quick_ti
    check = json.loads((workdir / "omega_check.json").read_text())
    assert check["step"] == LAST_STEP and check["n_atoms"] == N_ATOMS
    templates = check["templates_denoised"]
    assert sum(templates["best_phase"].values()) == pytest.approx(1.0, abs=1e-3)
    assert sum(templates["shell_size"].values()) == pytest.approx(1.0, abs=1e-3)
    # the quick variant does not transform: on the dumped positions (no model involved) the
    # compressed HCP still fits the ideal HCP shell best more often than any other
    dumped = check["templates_dumped"]["best_phase"]
    assert max(dumped, key=dumped.get) == "hcp", dumped
    assert check["ptm_dumped_cutoff_0"]["hcp"] > 0.5
    assert [row["step"] for row in check["timeline"]] == list(range(500, LAST_STEP + 1, 500))
