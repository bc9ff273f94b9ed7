"""HDF5 phase time series: round trip, live reading, SIGKILL survival, restarts, plotting."""

import os
import selectors
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from lpfm_insitu.tracking.statistics import PhaseStatistics
from lpfm_insitu.tracking.timeseries import PhaseTimeSeries, read_time_series

REPO = Path(__file__).resolve().parents[2]
PHASES = ("A_cI2_229_a", "A_hP2_194_c", "A_hP3_191_ad")
TIMEOUT = 60


def stats_at(step):
    """Deterministic statistics for a step (so rows can be checked after the fact)."""
    k = step // 10
    counts = np.array([1000 - 3 * k, 2 * k, k, 0]) if k < 300 else np.array([100, 500, 400, 0])
    return PhaseStatistics(PHASES, counts, int(counts.sum()), 3.0 + 0.001 * k, np.array([1.0, 2.0, float(k)]))


def profile_at(step, bins=4):
    p = np.zeros((bins, len(PHASES) + 1))
    p[:, 0] = 1.0 - step / 1e4
    p[:, 1] = step / 1e4
    return p


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {test_dir!r})
    from test_tracking_timeseries import PHASES, stats_at
    from lpfm_insitu.tracking.timeseries import PhaseTimeSeries
    ts = PhaseTimeSeries.open(sys.argv[1], PHASES, {{"model": "writer"}})
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "append":
            first, last = int(args[0]), int(args[1])
            for step in range(first, last + 1, 10):
                ts.append(step, step * 1e-3, stats_at(step))
            print("done", ts.last_step, flush=True)
        elif cmd == "close":
            ts.close()
            print("closed", flush=True)
            break
    """
)


class Writer:
    """A time series writer in another process, driven line by line."""

    def __init__(self, tmp_path, path):
        script = tmp_path / "writer.py"
        script.write_text(WRITER.format(test_dir=str(Path(__file__).parent)))
        env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, str(script), str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def send(self, line, expect):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=TIMEOUT):
            self.kill()
            pytest.fail(f"writer did not answer {line!r} within {TIMEOUT}s")
        answer = self.proc.stdout.readline().strip()
        assert answer == expect, (answer, self.proc.stderr.read() if self.proc.poll() is not None else "")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=TIMEOUT)


def steps(data):
    return data["step"].tolist()


def check_rows(data):
    for i, step in enumerate(data["step"]):
        st = stats_at(int(step))
        np.testing.assert_array_equal(data["counts"][i], st.counts)
        np.testing.assert_allclose(data["fractions"][i], st.fractions)
        assert data["time"][i] == pytest.approx(step * 1e-3)
        assert data["mean_confidence"][i] == pytest.approx(st.mean_confidence)
        np.testing.assert_allclose(data["mean_op"][i], st.mean_op)


# -- basic round trip ----------------------------------------------------------
def test_roundtrip_with_profile_attrs_and_triggers(tmp_path):
    path = tmp_path / "ts.h5"
    attrs = {"model": "lpfm-test", "checksum": "abc123", "n_layers": 3, "config": {"cutoff": 5.5, "phases": list(PHASES)},
             "species": ["Fe"], "note": None}
    with PhaseTimeSeries.open(path, PHASES, attrs, profile_bins=4) as ts:
        for step in range(0, 100, 10):
            ts.append(step, step * 1e-3, stats_at(step), profile=profile_at(step), profile_edges=np.linspace(0, 40, 5))
            if step == 50:
                ts.record_trigger(step, step * 1e-3, "appear:A_hP3_191_ad>0.05 (fraction 0.06)", ["restart.50", "snap_50.h5"])
        ts.append(100, 0.1, stats_at(100))  # profile missing -> NaN row
    data = read_time_series(path)
    assert steps(data) == list(range(0, 101, 10))
    check_rows(data)
    assert data["phases"] == list(PHASES) + ["unknown"]
    assert data["attrs"] == attrs
    assert data["format_version"] == 1
    assert data["profile"].shape == (11, 4, 4)
    np.testing.assert_allclose(data["profile"][5], profile_at(50))
    assert np.all(np.isnan(data["profile"][10])) and np.all(np.isnan(data["profile_edges"][10]))
    np.testing.assert_allclose(data["profile_edges"][0], [0, 10, 20, 30, 40])
    np.testing.assert_allclose(data["fractions"].sum(axis=1), 1.0)
    assert data["triggers"]["step"].tolist() == [50]
    assert data["triggers"]["description"] == ["appear:A_hP3_191_ad>0.05 (fraction 0.06)"]
    assert data["triggers"]["files"] == [["restart.50", "snap_50.h5"]]
    with h5py.File(path, "r") as f:  # resizable, chunked layout
        assert f["fractions"].maxshape == (None, 4) and f["fractions"].chunks is not None
        assert f["step"].dtype == np.int64 and f["time"].dtype == np.float64


def test_non_increasing_step_within_a_run_raises(tmp_path):
    with PhaseTimeSeries.open(tmp_path / "ts.h5", PHASES, {}) as ts:
        ts.append(10, 0.01, stats_at(10))
        ts.append(20, 0.02, stats_at(20))
        with pytest.raises(ValueError, match="not after the last stored step 20"):
            ts.append(20, 0.02, stats_at(20))
    assert steps(read_time_series(tmp_path / "ts.h5")) == [10, 20]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        PhaseTimeSeries.open(tmp_path / "a.h5", PHASES, {"phases": "x"})
    assert not (tmp_path / "a.h5").exists()  # no half-made file left behind
    with pytest.raises(ValueError, match="unknown"):
        PhaseTimeSeries.open(tmp_path / "b.h5", PHASES + ("unknown",), {})
    with PhaseTimeSeries.open(tmp_path / "c.h5", PHASES, {}) as ts:
        with pytest.raises(ValueError, match="without profile_bins"):
            ts.append(0, 0.0, stats_at(0), profile=profile_at(0))
        other = PhaseStatistics(("x", "y", "z"), [1, 0, 0, 0], 1, 1.0, np.zeros(3))
        with pytest.raises(ValueError, match="phases"):
            ts.append(0, 0.0, other)


# -- live reading and crash survival --------------------------------------------
def test_readable_while_writer_is_open(tmp_path):
    path = tmp_path / "live.h5"
    w = Writer(tmp_path, path)
    try:
        w.send("append 0 90", "done 90")
        data = read_time_series(path)  # writer still has the file open
        assert steps(data) == list(range(0, 91, 10))
        check_rows(data)
        with h5py.File(path, "r") as f:  # plain h5py, as a user would, mid-run
            assert f["step"].shape == (10,)
        w.send("append 100 190", "done 190")
        with h5py.File(path, "r") as f:
            assert f["step"][:].tolist() == list(range(0, 191, 10))
        assert steps(read_time_series(path)) == list(range(0, 191, 10))
        w.send("close", "closed")
    finally:
        w.kill()
    assert steps(read_time_series(path)) == list(range(0, 191, 10))


def test_sigkilled_writer_leaves_rows_and_restart_continues(tmp_path):
    path = tmp_path / "killed.h5"
    w = Writer(tmp_path, path)
    try:
        w.send("append 0 490", "done 490")
    finally:
        w.kill()  # SIGKILL: no close, no atexit
    assert w.proc.returncode == -signal.SIGKILL
    with h5py.File(path, "r") as f:  # plain h5py opens the file of a killed writer
        assert f["step"][:].tolist() == list(range(0, 491, 10))
    data = read_time_series(path)
    assert steps(data) == list(range(0, 491, 10))
    check_rows(data)
    # A restart from a checkpoint at step 300 replays from 310: rows after 300
    # dropped, one row per step afterwards.
    ts = PhaseTimeSeries.open(path, PHASES, {"model": "writer"})
    with ts:
        assert ts.last_step == 490
        for step in range(310, 401, 10):
            ts.append(step, step * 1e-3, stats_at(step))
    data = read_time_series(path)
    assert steps(data) == list(range(0, 401, 10))
    check_rows(data)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


OLD_SWMR_WRITER = textwrap.dedent(
    """
    import sys, h5py
    sys.path.insert(0, {test_dir!r})
    from test_tracking_timeseries import PHASES, stats_at
    from lpfm_insitu.tracking import timeseries
    timeseries.LIBVER = "latest"  # an earlier version's SWMR file
    ts = timeseries.PhaseTimeSeries.open(sys.argv[1], PHASES, {{"model": "writer"}})
    ts._file.swmr_mode = True  # as the earlier version's writer switched it on
    for step in range(0, 101, 10):
        ts.append(step, step * 1e-3, stats_at(step))
    print("done", flush=True)
    sys.stdin.readline()
    """
)


def test_file_of_a_killed_swmr_writer_of_an_earlier_version_is_recovered(tmp_path):
    path = tmp_path / "old.h5"
    script = tmp_path / "old_writer.py"
    script.write_text(OLD_SWMR_WRITER.format(test_dir=str(Path(__file__).parent)))
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "done"
    finally:
        proc.kill()
        proc.wait(timeout=TIMEOUT)
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(path, "r")  # what the SWMR format left behind
    assert steps(read_time_series(path)) == list(range(0, 101, 10))
    with pytest.warns(RuntimeWarning, match="did not close"):
        ts = PhaseTimeSeries.open(path, PHASES, {"model": "writer"})
    with ts:
        ts.append(110, 0.11, stats_at(110))
    with h5py.File(path, "r") as f:  # recovered into this version's format
        assert f["step"][:].tolist() == list(range(0, 111, 10))


def test_reading_something_else_names_the_file_and_the_fix(tmp_path):
    from lpfm_insitu.errors import LPFMError

    dump = tmp_path / "x.dump"
    dump.write_text("ITEM: TIMESTEP\n0\n")
    with pytest.raises(LPFMError, match=r"x.dump' is not an lpfm phase time series \(not an "
                                        r"HDF5 file\).*lpfm track DUMP --output track.h5"):
        read_time_series(dump)
    other = tmp_path / "other.h5"
    h5py.File(other, "w").close()
    with pytest.raises(LPFMError, match="without the format attribute"):
        read_time_series(other)
    with pytest.raises(LPFMError, match="does not exist"):
        read_time_series(tmp_path / "missing.h5")


# -- restart continuation -----------------------------------------------------
def test_restart_truncates_replayed_steps_and_triggers(tmp_path):
    path = tmp_path / "restart.h5"
    with PhaseTimeSeries.open(path, PHASES, {"model": "m"}) as ts:
        for step in range(0, 101, 10):
            ts.append(step, step * 1e-3, stats_at(step))
            if step in (30, 70):
                ts.record_trigger(step, step * 1e-3, f"trigger at {step}", [f"restart.{step}"])
    # restart from the checkpoint at step 30 (output every 10 steps): the first
    # append is at 40, so rows >= 40 and the trigger at 70 must go.
    with PhaseTimeSeries.open(path, PHASES, {"model": "m"}) as ts:
        assert ts.last_step == 100
        for step in range(40, 61, 10):
            ts.append(step, step * 1e-3, stats_at(step))
        with pytest.raises(ValueError):  # only the first write may go back in time
            ts.append(50, 0.05, stats_at(50))
    data = read_time_series(path)
    assert steps(data) == [0, 10, 20, 30, 40, 50, 60]
    check_rows(data)
    assert data["triggers"]["step"].tolist() == [30]
    # reopening and continuing after the last step keeps everything
    with PhaseTimeSeries.open(path, PHASES, {"model": "m"}) as ts:
        ts.append(70, 0.07, stats_at(70))
    assert steps(read_time_series(path)) == [0, 10, 20, 30, 40, 50, 60, 70]


def test_restart_whose_first_write_is_a_trigger(tmp_path):
    path = tmp_path / "restart2.h5"
    with PhaseTimeSeries.open(path, PHASES, {}) as ts:
        for step in range(0, 51, 10):
            ts.append(step, 0.0, stats_at(step))
        ts.record_trigger(50, 0.0, "late", [])
    with PhaseTimeSeries.open(path, PHASES, {}) as ts:
        ts.record_trigger(20, 0.0, "replayed", [])
        ts.append(20, 0.0, stats_at(20))
    data = read_time_series(path)
    assert steps(data) == [0, 10, 20]
    assert data["triggers"]["description"] == ["replayed"]


def test_reader_holding_file_does_not_block_restart(tmp_path):
    path = tmp_path / "held.h5"
    with PhaseTimeSeries.open(path, PHASES, {}) as ts:
        ts.append(0, 0.0, stats_at(0))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import h5py, sys; f = h5py.File(sys.argv[1], 'r', swmr=True); "
         "print('open', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with PhaseTimeSeries.open(path, PHASES, {}) as ts:
            ts.append(10, 0.01, stats_at(10))
    finally:
        holder.communicate("", timeout=TIMEOUT)
    assert steps(read_time_series(path)) == [0, 10]


def test_phase_list_mismatch_names_both_lists_and_suggests_new_file(tmp_path):
    path = tmp_path / "run.h5"
    with PhaseTimeSeries.open(path, PHASES, {}) as ts:
        ts.append(0, 0.0, stats_at(0))
    before = path.read_bytes()
    other = ("A_cI2_229_a", "A_cF4_225_a")
    with pytest.raises(ValueError) as err:
        PhaseTimeSeries.open(path, other, {})
    msg = str(err.value)
    assert str(list(PHASES)) in msg and str(list(other)) in msg
    assert "run_2.h5" in msg
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match="4 bins"):
        with PhaseTimeSeries.open(tmp_path / "p.h5", PHASES, {}, profile_bins=4):
            pass
        PhaseTimeSeries.open(tmp_path / "p.h5", PHASES, {}, profile_bins=8)


def test_changed_attributes_on_reopen_warn(tmp_path):
    path = tmp_path / "attrs.h5"
    PhaseTimeSeries.open(path, PHASES, {"model": "v1", "cfg": {"a": 1}}).close()
    with pytest.warns(RuntimeWarning, match=r"\['model'\]"):
        PhaseTimeSeries.open(path, PHASES, {"model": "v2", "cfg": {"a": 1}}).close()
    assert read_time_series(path)["attrs"]["model"] == "v1"


# -- plotting --------------------------------------------------------------------
def test_plot_time_series(tmp_path):
    from lpfm_insitu.tracking.plotting import plot_time_series

    path = tmp_path / "plot.h5"
    with PhaseTimeSeries.open(path, PHASES, {"model": "m"}, profile_bins=4) as ts:
        for step in range(0, 200, 10):
            prof = np.zeros((4, 4))
            prof[:, 0] = 1.0
            if step > 100:
                prof[: (step - 100) // 25 + 1] = [0.1, 0.6, 0.3, 0.0]
            ts.append(step, step * 1e-3, stats_at(step), profile=prof, profile_edges=np.linspace(0, 40, 5))
        ts.record_trigger(120, 0.12, "appear:A_hP3_191_ad>0.05", ["restart.120"])
        written = plot_time_series(path, tmp_path / "plots")  # while still open
    names = sorted(p.name for p in written)
    assert names == ["plot_fractions.png", "plot_profile_dominant.png", "plot_profile_fractions.png"]
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000

    bare = tmp_path / "bare.h5"
    PhaseTimeSeries.open(bare, PHASES, {}).close()  # no rows, no profile
    assert [p.name for p in plot_time_series(bare, tmp_path / "plots")] == ["bare_fractions.png"]
