"""Two MPI ranks with different (and empty) atom sets give the serial answer.

Runs tests/mpi_scripts/tracking_mpi.py under ``mpirun -np 2`` (which also
checks collective error handling), then compares the files it wrote with the
serial computation on the concatenated data.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lpfm_insitu.lammps.launch import kill_job
from lpfm_insitu.tracking.statistics import reduce_phase_statistics, spatial_profile
from lpfm_insitu.tracking.snapshot import read_snapshot
from lpfm_insitu.tracking.timeseries import read_time_series
from lpfm_insitu.tracking.triggers import CheckpointTrigger, parse_rules

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parents[1] / "mpi_scripts" / "tracking_mpi.py"
TIMEOUT = 180

pytestmark = pytest.mark.skipif(
    shutil.which("mpirun") is None or importlib.util.find_spec("mpi4py") is None,
    reason="needs mpirun and mpi4py",
)


def _load_script():
    spec = importlib.util.spec_from_file_location("tracking_mpi", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _mpirun(out_dir):
    cmd = ["mpirun"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    cmd += ["--oversubscribe", "-np", "2", sys.executable, str(SCRIPT), str(out_dir)]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    # Own session, so a hang can be ended by killing exactly this job.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        kill_job(proc)
        out, err = proc.communicate()
        pytest.fail(f"mpirun hung for {TIMEOUT}s\nstdout:\n{out}\nstderr:\n{err}")
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def mpi_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("mpi")
    rc, out, err = _mpirun(out_dir)
    assert rc == 0 and "ALL OK" in out, f"rc={rc}\nstdout:\n{out}\nstderr:\n{err}"
    return out_dir


def test_time_series_equals_serial(mpi_run):
    mod = _load_script()
    data = read_time_series(mpi_run / "ts.h5")
    assert data["step"].tolist() == [0, 100, 200]
    trigger = CheckpointTrigger(parse_rules(mod.RULES, mod.PHASES))
    expected_triggers = []
    for i, name in enumerate(mod.CASES):
        full = mod.concatenated(mod.make_case(name))
        ref = reduce_phase_statistics(full["labels"], full["confidence"], full["ops"], mod.PHASES)
        np.testing.assert_array_equal(data["counts"][i], ref.counts)
        np.testing.assert_allclose(data["fractions"][i], ref.fractions)
        assert data["fractions"][i].sum() == pytest.approx(1.0)
        assert data["mean_confidence"][i] == pytest.approx(ref.mean_confidence)
        np.testing.assert_allclose(data["mean_op"][i], ref.mean_op, equal_nan=True)
        prof = spatial_profile(full["labels"], full["positions"][:, 0], len(mod.PHASES), 0.0, 50.0, 5)
        np.testing.assert_array_equal(data["profile"][i], prof)
        if trigger.update(100 * i, ref):
            expected_triggers.append(100 * i)
            trigger.record_checkpoint(100 * i, ref)
    assert expected_triggers == [100, 200]  # the script's data is built to fire twice
    assert data["triggers"]["step"].tolist() == expected_triggers
    assert data["triggers"]["files"][0] == [str(mpi_run / "snap_empty_other.h5")]


@pytest.mark.parametrize("case", ["uneven", "empty_other", "empty_root"])
def test_snapshot_equals_serial(mpi_run, case):
    mod = _load_script()
    full = mod.concatenated(mod.make_case(case))
    snap = read_snapshot(mpi_run / f"snap_{case}.h5")
    order = np.argsort(full["ids"])
    np.testing.assert_array_equal(snap["ids"], full["ids"][order])
    for name in ("types", "positions", "velocities", "labels"):
        np.testing.assert_array_equal(snap[name], full[name][order], err_msg=name)
    np.testing.assert_array_equal(snap["confidence"], full["confidence"][order].astype(np.float32))
    np.testing.assert_array_equal(snap["ops"], full["ops"][order].astype(np.float32))
    assert snap["attrs"] == {"case": case}
    assert not (mpi_run / f"snap_{case}.h5.tmp").exists()
