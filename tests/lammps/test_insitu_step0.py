"""Labels at step 0 and after `run 0`, and the invoke period checked against `every`,
in real `mpirun -np N lmp` runs of ``mpi_scripts/step0.in``.

LAMMPS' fix python/invoke is not called while a run is set up; ``python lpfm_setup
invoke`` declares a companion fix that is, so the first dump frame, the thermo fractions
at step 0 and the time series carry labels from step 0 on.
"""

import shutil
import sys

import numpy as np
import pytest

from conftest import MPI_SCRIPTS

sys.path.insert(0, str(MPI_SCRIPTS))
from insitu_common import atoms_of, decided, make_tiny_model, read_dump_frames  # noqa: E402

pytestmark = [pytest.mark.mpi, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

TIMEOUT = 420


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def _run(tmp_path, run_lmp, tag, n_ranks, model, check=True, **variables):
    workdir = tmp_path / tag
    workdir.mkdir()
    shutil.copy(MPI_SCRIPTS / "step0.in", workdir)
    result = run_lmp("step0.in", n_ranks, cwd=workdir, timeout=TIMEOUT, check=check,
                     variables={"lpfm_model": model, **variables})
    result.workdir = workdir
    return result


def _thermo(stdout):
    """Thermo rows under the step0.in header: (step, lpfm_step, frac_fcc, frac_fcc_label)."""
    rows, active = [], False
    for line in stdout.splitlines():
        if line.startswith("Step v_lpfm_step"):
            active = True
            continue
        if line.startswith("Loop time"):
            active = False
        if active:
            try:
                rows.append(tuple(float(v) for v in line.split()))
            except ValueError:
                pass  # a line the package printed between header and rows
    return rows


@pytest.fixture(scope="module")
def step0_runs(tmp_path_factory, tiny_model):
    from conftest import run_lammps

    runs = {}
    for n_ranks in (1, 2):
        workdir = tmp_path_factory.mktemp(f"np{n_ranks}")
        shutil.copy(MPI_SCRIPTS / "step0.in", workdir)
        result = run_lammps("step0.in", n_ranks, cwd=workdir, timeout=TIMEOUT,
                            variables={"lpfm_model": tiny_model})
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        result.workdir = workdir
        runs[n_ranks] = result
    return runs


def test_labels_and_thermo_fractions_at_step_0_on_1_and_2_ranks(step0_runs, tiny_model):
    from lpfm_insitu.model.files import load_model
    from lpfm_insitu.tracking.timeseries import read_time_series

    model = load_model(tiny_model)
    fcc = model.phases.index("A_cF4_225_a")
    labels = {}
    for n_ranks, result in step0_runs.items():
        frames = read_dump_frames(result.workdir / "step0.dump")
        assert [f[0] for f in frames] == [0, 5, 10]
        step, cols, bounds, _ = frames[0]
        got = cols["i_lpfm_phase"].astype(int)
        ref = model.classify_atoms(atoms_of(cols, bounds))
        ok = decided(ref, model.confidence_threshold)
        assert ok.mean() > 0.98
        np.testing.assert_array_equal(got[ok], ref.labels[ok])
        assert len(np.unique(got)) >= 2, "the check needs varied labels"
        labels[n_ranks] = got
        # thermo at step 0 (printed by `run 0` and again by the next run) shows the
        # statistics of step 0, under the common name and the AFLOW label alike
        rows = _thermo(result.stdout)
        assert [r[0] for r in rows] == [0, 0, 5, 10]
        first = rows[0]
        assert first[1] == 0 and first[2] == first[3] == pytest.approx(np.mean(got == fcc))
        assert first[2] > 0
        series = read_time_series(result.workdir / "step0.h5")
        assert series["step"].tolist() == [0, 5, 10]
    np.testing.assert_array_equal(labels[1], labels[2])


def test_an_invoke_period_twice_every_stops_the_run(tmp_path, run_lmp, tiny_model):
    # with the companion: it classifies step 5, which python/invoke (every 10) skipped
    result = _run(tmp_path, run_lmp, "first", 2, tiny_model, check=False, invoke=10,
                  steps=30)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "configure(every=5) but fix python/invoke did not call lpfm_insitu at step" in out
    assert "equal to every (5)" in out
    # without it: two intervals of 10 steps
    result = _run(tmp_path, run_lmp, "plain", 1, tiny_model, check=False, invoke=10, first=0,
                  steps=40)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "lpfm_insitu is called every 10 steps (steps 10, 20, 30)" in out
    assert "equal to every (5)" in out
