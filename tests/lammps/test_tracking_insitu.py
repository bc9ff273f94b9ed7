"""On-the-fly phase tracking (``lpfm_insitu.lammps.tracking``) in real ``mpirun -np 2 lmp`` runs.

``tracking_toggle.in`` stretches the box (atoms and all) and restores it between short runs
while the classifier keeps a fixed length scale, so the model's confidence drops and
recovers at known steps: A at steps 5-10, B at 15-20, A 25-30, B 35-40, A 45-50, B 55-60.
The rules ``confidence<5.0`` and ``appear:A_cI2_229_a>0.1`` become true at the first step
of every B segment; with a cooldown of 25 steps and at most 2 checkpoints the trigger must
fire at 15, be held back at 35 (20 steps after 15), fire at 40 (the first allowed step, the
condition still holding), and stay silent at 55 (maximum reached).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from conftest import MPI_SCRIPTS
from lpfm_insitu.lammps.launch import (kill_job, lammps_environment, lmp_executable, mpirun_prefix,
                                       run_lammps)

sys.path.insert(0, str(MPI_SCRIPTS))
from insitu_common import read_dump_frames  # noqa: E402

pytestmark = pytest.mark.mpi

TIMEOUT = 600
EVERY = 5
PHASES_SHOWN = ["A_cF4_225_a", "A_hP2_194_c", "unknown"]
EXPECTED_FIRINGS = [15, 40]


def _run(workdir, input_name, variables=None, n_ranks=2):
    start = time.perf_counter()
    result = run_lammps(input_name, n_ranks, variables=variables, cwd=workdir, timeout=TIMEOUT)
    result.seconds = time.perf_counter() - start
    if result.returncode != 0:
        pytest.fail(f"LAMMPS failed (exit {result.returncode}):\n{result.stdout[-4000:]}\n"
                    f"{result.stderr[-3000:]}")
    return result


def thermo_rows(stdout: str, header_start: str = "Step v_lpfm_step"):
    """All thermo rows (dict column -> float) printed under headers starting so.

    Lines printed by the package (rank 0) may come between the header and the rows.
    """
    rows, columns = [], None
    for line in stdout.splitlines():
        if line.startswith(header_start):
            columns = line.split()
            continue
        if line.startswith("Loop time"):
            columns = None
            continue
        parts = line.split()
        if columns and len(parts) == len(columns):
            try:
                values = [float(p) for p in parts]
            except ValueError:
                continue
            rows.append(dict(zip(columns, values)))
    return rows


@pytest.fixture(scope="module")
def toggle_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("toggle")
    shutil.copy(MPI_SCRIPTS / "tracking_toggle.in", workdir)
    result = _run(workdir, "tracking_toggle.in")
    from lpfm_insitu.tracking.timeseries import read_time_series

    result.workdir = workdir
    result.series = read_time_series(workdir / "toggle.h5")
    result.frames = {step: (cols, bounds) for step, cols, bounds, _ in
                     read_dump_frames(workdir / "toggle.dump")}
    return result


def _counts(labels, n_phases):
    labels = np.asarray(labels, dtype=int)
    return np.bincount(np.where(labels < 0, n_phases, labels), minlength=n_phases + 1)


# --- (a) the statistics are the global ones, and LAMMPS prints them ---------------------

def test_fractions_sum_to_one_and_match_the_dumped_labels(toggle_run):
    data = toggle_run.series
    phases = data["phases"]
    n = len(phases) - 1
    assert data["step"].tolist() == list(range(EVERY, 61, EVERY))
    np.testing.assert_allclose(data["fractions"].sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (data["n_atoms"] == 256).all()
    # read when the series opens: the unit style is known from the first invocation on
    assert data["attrs"]["units"] == "metal"
    assert sorted(toggle_run.frames) == data["step"].tolist()
    varied = 0
    for row, step in enumerate(data["step"]):
        cols, bounds = toggle_run.frames[int(step)]
        labels = cols["i_lpfm_phase"].astype(int)
        varied = max(varied, len(np.unique(labels)))
        np.testing.assert_array_equal(data["counts"][row], _counts(labels, n),
                                      err_msg=f"step {step}")
        np.testing.assert_allclose(data["mean_confidence"][row], cols["d_lpfm_conf"].mean(),
                                   rtol=1e-8, err_msg=f"step {step}")
        # mean order parameter of a phase = mean of its own logit over its atoms
        op_cols = {p: k for k, p in enumerate(["A_cF4_225_a", "A_hP2_194_c", "A_cI2_229_a",
                                                 "A_hP3_191_ad"], start=1)}
        for p, k in op_cols.items():
            mask = labels == phases.index(p)
            if mask.any():
                np.testing.assert_allclose(data["mean_op"][row][phases.index(p)],
                                           cols[f"d2_lpfm_op[{k}]"][mask].mean(), rtol=1e-8)
        # the x profile: the same binning of the dumped atoms, with the stored edges
        from lpfm_insitu.tracking.statistics import spatial_profile

        edges = data["profile_edges"][row]
        expected = spatial_profile(labels, cols["x"], n, edges[0], edges[-1], len(edges) - 1)
        np.testing.assert_allclose(data["profile"][row], expected, atol=1e-12)
    assert varied >= 3, "the check needs frames with several labels"
    # the "initial" profile range is the box at the first invocation, kept
    np.testing.assert_allclose(data["profile_edges"][-1], data["profile_edges"][0])


def test_thermo_prints_the_latest_statistics(toggle_run):
    data = toggle_run.series
    phases = data["phases"]
    rows = {int(r["Step"]): r for r in thermo_rows(toggle_run.stdout)}
    assert rows[0]["v_lpfm_step"] == -1  # nothing classified yet at step 0
    for k, step in enumerate(data["step"]):
        r = rows[int(step)]
        assert r["v_lpfm_step"] == step  # thermo at an invocation step shows that step
        for p in PHASES_SHOWN:
            name = "v_lpfm_frac_" + p
            np.testing.assert_allclose(r[name], data["fractions"][k][phases.index(p)],
                                       atol=1e-10)
        np.testing.assert_allclose(r["v_lpfm_conf_mean"], data["mean_confidence"][k], rtol=1e-9)
    # python-style variables computed on every rank agree: LAMMPS printed a single value


# --- (c) the trigger fires when its rules say, with cooldown and maximum -----------------

def reference_firings(data, cooldown, max_checkpoints, conf_below, phase, above):
    """Independent re-implementation of the crossing rules with cooldown and maximum."""
    phases = data["phases"]
    fired, last, armed = [], None, {}
    for k, step in enumerate(data["step"].tolist()):
        values = {"conf": data["mean_confidence"][k] < conf_below,
                  "appear": data["fractions"][k][phases.index(phase)] > above}
        blocked = len(fired) >= max_checkpoints or (last is not None and step - last < cooldown)
        any_fire = False
        for key, active in values.items():
            if key not in armed:
                armed[key] = not active
            elif not active:
                armed[key] = True
            elif armed[key] and not blocked:
                armed[key] = False
                any_fire = True
        if any_fire:
            fired.append(step)
            last = step
    return fired


def test_trigger_fires_when_the_rule_says_with_cooldown_and_maximum(toggle_run):
    from lpfm_insitu.tracking.snapshot import read_snapshot

    data = toggle_run.series
    phases = data["phases"]
    steps = data["step"].tolist()
    conf = dict(zip(steps, data["mean_confidence"]))
    # the schedule's precondition: B segments are below the threshold, A segments above
    for step in steps:
        in_b = (step - 1) // 10 % 2 == 1
        assert (conf[step] < 5.0) == in_b, f"step {step}: mean confidence {conf[step]}"
    bcc = data["fractions"][:, phases.index("A_cI2_229_a")]
    assert reference_firings(data, 25, 2, 5.0, "A_cI2_229_a", 0.1) == EXPECTED_FIRINGS
    trig = data["triggers"]
    assert trig["step"].tolist() == EXPECTED_FIRINGS, (trig, bcc)
    assert all("confidence<5.0" in d for d in trig["description"])
    for step, files in zip(EXPECTED_FIRINGS, trig["files"]):
        snapshot, restart = files
        assert restart == f"ckpt/restart.{step}"  # for the input loop (not used here)
        snap = read_snapshot(toggle_run.workdir / snapshot)
        cols, _ = toggle_run.frames[step]
        assert snap["step"] == step
        np.testing.assert_array_equal(snap["ids"], cols["id"].astype(int))
        np.testing.assert_array_equal(snap["labels"], cols["i_lpfm_phase"].astype(int))
        np.testing.assert_allclose(snap["positions"][:, 0], cols["x"], atol=1e-8)
        np.testing.assert_allclose(snap["confidence"], cols["d_lpfm_conf"], rtol=1e-6)
        assert snap["ops"].shape == (256, len(phases) - 1)
        assert snap["velocities"] is not None
        assert snap["attrs"]["trigger_state"]["n_fired"] == EXPECTED_FIRINGS.index(step) + 1
    # the flag (no input loop here, so nobody resets it) and the count, as thermo shows them
    rows = {int(r["Step"]): r for r in thermo_rows(toggle_run.stdout)}
    for step in steps:
        assert rows[step]["v_lpfm_checkpoint"] == (1 if step >= 15 else 0)
        assert rows[step]["v_lpfm_ncheckpoints"] == sum(s <= step for s in EXPECTED_FIRINGS)
    out = toggle_run.stdout
    assert "lpfm_insitu: step 15: checkpoint trigger 1/2 fired: confidence<5.0" in out
    assert "lpfm_insitu: step 40: checkpoint trigger 2/2 fired" in out
    assert "step 55: checkpoint" not in out


# --- (b) readable while LAMMPS writes it, and intact after SIGKILL -----------------------

def _rows_in(path) -> int:
    """Rows a plain h5py reader sees now (0 while the file is being created)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return min(f[name].shape[0] for name in ("step", "fractions", "profile"))
    except (OSError, KeyError):
        return 0


def test_time_series_readable_mid_run_and_after_sigkill(tmp_path):
    """Waits on the file and the processes, not on the clock: a loaded machine only makes
    it slower (the long deadline guards against a hung run, not a slow one)."""
    import h5py

    from lpfm_insitu.tracking.timeseries import PhaseTimeSeries, read_time_series

    shutil.copy(MPI_SCRIPTS / "tracking_toggle.in", tmp_path)
    cmd = mpirun_prefix(2) + [lmp_executable(), "-in", "tracking_toggle.in",
                              "-var", "segment", "100000", "-log", "log.lammps"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=lammps_environment(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = tmp_path / "toggle.h5"
    seen = None
    try:
        deadline = time.monotonic() + 3 * TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline and _rows_in(path) < 3:
            time.sleep(0.2)
        assert proc.poll() is None, "LAMMPS ended early"
        assert _rows_in(path) >= 3, "no rows appeared"
        seen = read_time_series(path)  # while the writer appends
    finally:
        # the whole job, mpirun and both ranks (killing mpirun's process group alone left
        # rank 0 appending rows after the file was read)
        kill_job(proc)
    n_seen = len(seen["step"])
    np.testing.assert_allclose(seen["fractions"].sum(axis=1), 1.0, atol=1e-12)
    with h5py.File(path, "r") as f:  # plain h5py, as any user or tool would open it
        plain_steps = f["step"][:].tolist()
    after = read_time_series(path)
    steps = after["step"].tolist()
    assert steps == plain_steps
    assert len(steps) >= n_seen
    assert steps == list(range(EVERY, EVERY * (len(steps) + 1), EVERY))  # every row, in order
    np.testing.assert_array_equal(after["counts"][:n_seen], seen["counts"])
    np.testing.assert_allclose(after["fractions"].sum(axis=1), 1.0, atol=1e-12)
    assert np.isfinite(after["profile"]).all()
    # a restarted run can continue the file of the killed writer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with PhaseTimeSeries.open(path, after["phases"][:-1], after["attrs"],
                                  profile_bins=4) as ts:
            assert ts.last_step == steps[-1]


# --- (d) a run restarted from a triggered checkpoint continues the series and the MD -----

RESTART_RULES, RESTART_COOLDOWN, RESTART_MAX = "confidence<6.0", 100, 2


@pytest.fixture(scope="module")
def restart_runs(tmp_path_factory):
    from lpfm_insitu.tracking.timeseries import read_time_series

    workdir = tmp_path_factory.mktemp("restart")
    shutil.copy(MPI_SCRIPTS / "tracking_restart.in", workdir)
    original = _run(workdir, "tracking_restart.in")
    shutil.copy(workdir / "md.h5", workdir / "md_original.h5")
    first = int(read_time_series(workdir / "md.h5")["triggers"]["step"][0])
    restarted = _run(workdir, "tracking_restart.in",
                     {"restart_step": first, "dumpfile": "md.restarted.dump"})
    return workdir, original, restarted, first


def test_restart_from_a_checkpoint_continues_series_trajectory_and_labels(restart_runs):
    from lpfm_insitu.tracking.timeseries import read_time_series
    from lpfm_insitu.tracking.triggers import CheckpointTrigger, parse_rules
    from lpfm_insitu.tracking.statistics import PhaseStatistics

    workdir, original, restarted, first = restart_runs
    orig = read_time_series(workdir / "md_original.h5")
    cont = read_time_series(workdir / "md.h5")
    phases = orig["phases"][:-1]
    steps = orig["step"].tolist()
    assert steps == list(range(10, 201, 10))
    fired = orig["triggers"]["step"].tolist()
    # the original run: the rule fired (crossing, cooldown, maximum) and the loop wrote restarts
    assert len(fired) == RESTART_MAX and fired[0] == first
    assert fired == reference_firings_conf(orig, RESTART_COOLDOWN, RESTART_MAX, 6.0)
    for step in fired:
        assert (workdir / "ckpt" / f"restart.{step}").is_file()
        assert (workdir / "ckpt" / f"snapshot.{step}.h5").is_file()
        # written by `python lpfm_reset invoke` through LAMMPS' print: screen and log
        assert f"lpfm_insitu: step {step}: checkpoint for {RESTART_RULES}" in original.stdout
    # the fix halt loop stopped the run at the trigger step and went on to the end
    assert "Fix halt condition for fix-id lpfm_halt met on step 20" in original.stdout
    assert "done at step 200" in original.stdout

    # the continued file: every step once, in order; the rows before the restart kept,
    # the rows after it rewritten with the same values; the same checkpoints
    assert cont["step"].tolist() == steps
    assert f"continuing md.h5 at step {first + 10}: kept {steps.index(first) + 1} row(s)" \
        in restarted.stdout
    np.testing.assert_array_equal(cont["counts"], orig["counts"])
    np.testing.assert_allclose(cont["mean_confidence"], orig["mean_confidence"], rtol=1e-6)
    assert cont["triggers"]["step"].tolist() == fired
    assert cont["triggers"]["description"] == orig["triggers"]["description"]

    # the restored trigger state matters: a fresh trigger on the rows after the restart
    # would have fired at another step (no cooldown known)
    fresh = CheckpointTrigger(parse_rules(RESTART_RULES, phases), RESTART_COOLDOWN, RESTART_MAX)
    fresh_fired = []
    for k, step in enumerate(steps):
        if step > first:
            stats = PhaseStatistics(phases, orig["counts"][k], int(orig["n_atoms"][k]),
                                    float(orig["mean_confidence"][k]), orig["mean_op"][k])
            if fresh.update(step, stats):
                fresh_fired.append(step)
    assert fresh_fired and fresh_fired[0] != fired[1], "the check needs a cooldown that matters"

    # trajectory and labels after the restart point equal the original continuation
    before = {s: (c, b) for s, c, b, _ in read_dump_frames(workdir / "md.dump")}
    after = {s: c for s, c, _, _ in read_dump_frames(workdir / "md.restarted.dump")}
    assert sorted(after) == [s for s in steps if s >= first]
    for step, cols in after.items():
        ref, bounds = before[step]
        np.testing.assert_array_equal(cols["id"], ref["id"])
        for axis, key in enumerate("xyz"):
            # the runs wrap atoms back into the periodic box at different moments
            length = bounds[axis, 1] - bounds[axis, 0]
            diff = cols[key] - ref[key]
            diff -= length * np.round(diff / length)
            np.testing.assert_allclose(diff, 0.0, rtol=0, atol=1e-6, err_msg=f"{key} at {step}")
        for key in ("vx", "vy", "vz"):
            np.testing.assert_allclose(cols[key], ref[key], rtol=0, atol=1e-6,
                                       err_msg=f"{key} at step {step}")
        # labels: the restart file carries them at the restart step (fix property/atom)
        np.testing.assert_array_equal(cols["i_lpfm_phase"], ref["i_lpfm_phase"])
        np.testing.assert_allclose(cols["d_lpfm_conf"], ref["d_lpfm_conf"], rtol=0, atol=1e-5)


def reference_firings_conf(data, cooldown, max_checkpoints, below):
    fired, last, armed = [], None, None
    for k, step in enumerate(data["step"].tolist()):
        active = data["mean_confidence"][k] < below
        blocked = len(fired) >= max_checkpoints or (last is not None and step - last < cooldown)
        if armed is None:
            armed = not active
        elif not active:
            armed = True
        elif armed and not blocked:
            armed = False
            fired.append(step)
            last = step
    return fired


# --- the restart logic itself, in process: cooldown and maximum across restarts ---------

PHASES_AB = ("A", "B")


def _options(folder, **kw):
    from lpfm_insitu.tracking.options import TrackingOptions

    options = dict(h5=str(folder / "t.h5"), profile_axis="x", profile_bins=3,
                   triggers="appear:B>0.5", cooldown=30, max_checkpoints=2,
                   snapshot_dir=str(folder / "ck"), verbose=False)
    options.update(kw)
    return TrackingOptions(**options)


def _answers(labels):
    """Per-atom answers for ``labels``: confidence 1, each atom's own logit 1."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    logits = np.zeros((n, len(PHASES_AB)))
    logits[np.arange(n), np.maximum(labels, 0)] = 1.0
    positions = np.column_stack([np.linspace(0, 9, n), np.zeros(n), np.zeros(n)])
    return labels, np.ones(n), logits, positions


def _tracked(step, labels):
    from lpfm_insitu.tracking.tracker import TrackedFrame

    labels, confidence, ops, positions = _answers(labels)
    return TrackedFrame(step=step, time=0.001 * step, labels=labels, confidence=confidence,
                        ops=ops, positions=positions, box_lo=np.zeros(3),
                        box_hi=np.full(3, 10.0))


def _insitu_frame(step, labels):
    from types import SimpleNamespace

    from lpfm_insitu.lammps.hooks import InsituFrame

    labels, confidence, ops, positions = _answers(labels)
    n = len(labels)
    result = SimpleNamespace(labels=labels, confidence=confidence, logits=ops)
    return InsituFrame(lmp=None, comm=None, step=step, time=0.001 * step, phases=PHASES_AB,
                       op_indices=np.arange(len(PHASES_AB)), local_index=np.arange(n),
                       ids=np.arange(1, n + 1), types=np.ones(n, dtype=int),
                       positions=positions, result=result, length_scale=1.0,
                       box_lo=np.zeros(3), box_hi=np.full(3, 10.0), tilts=(0.0, 0.0, 0.0),
                       periodic=(True, True, True), n_ghost=0, invocation=0)


def _labels(step):
    """80% B at steps 20-30, 50-60, 80-90, 110-120 (crossings at 20, 50, 80, 110), else 20%."""
    on = step in (20, 30, 50, 60, 80, 90, 110, 120)
    return [1] * 8 + [0] * 2 if on else [0] * 8 + [1] * 2


def _frame_files(frame, event):
    """A host's checkpoint: says which file it would write for this frame."""
    assert event.step == frame.step and event.description.startswith("appear:B>0.5")
    return [f"frame.{event.step}"]


def test_trigger_state_survives_restarts_in_process(tmp_path):
    from lpfm_insitu.tracking.timeseries import read_time_series
    from lpfm_insitu.tracking.tracker import PhaseTracker

    full = PhaseTracker(PHASES_AB, _options(tmp_path / "full", snapshot_dir="ck"),
                        checkpoint=_frame_files)
    for step in range(10, 131, 10):
        full(_tracked(step, _labels(step)))
    full.close()
    ref = read_time_series(tmp_path / "full" / "t.h5")
    # crossings at 20, 50, 80, 110; cooldown 30 lets 20 and 50 fire; maximum 2 stops 80, 110
    assert ref["triggers"]["step"].tolist() == [20, 50]
    assert ref["triggers"]["files"] == [["frame.20"], ["frame.50"]]
    assert full.trigger.n_fired == 2 and full.last_files == ["frame.50"]
    assert full.stats.fraction("B") == 0.2 and full.step == 130

    for restart_at in (20, 50, 60):
        work = tmp_path / f"r{restart_at}"
        work.mkdir()
        shutil.copy(tmp_path / "full" / "t.h5", work / "t.h5")
        tracker = PhaseTracker(PHASES_AB, _options(work, snapshot_dir="ck"),
                               checkpoint=_frame_files)
        for step in range(restart_at + 10, 131, 10):
            tracker(_tracked(step, _labels(step)))
        tracker.close()
        data = read_time_series(work / "t.h5")
        assert data["step"].tolist() == ref["step"].tolist(), restart_at
        np.testing.assert_array_equal(data["counts"], ref["counts"])
        assert data["triggers"]["step"].tolist() == [20, 50], restart_at
        assert data["triggers"]["files"] == ref["triggers"]["files"], restart_at
        assert tracker.trigger.n_fired == 2
    # a fresh trigger would have fired at 80 after a restart at 60: the state mattered
    fresh = PhaseTracker(PHASES_AB, _options(tmp_path / "fresh"))
    for step in range(70, 131, 10):
        fresh(_tracked(step, _labels(step)))
    fresh.close()
    assert read_time_series(tmp_path / "fresh" / "t.h5")["triggers"]["step"].tolist() == [80, 110]


def test_lammps_variables_follow_the_tracker_and_checkpoints_write_snapshots(tmp_path):
    from lpfm_insitu.lammps.errors import InsituError
    from lpfm_insitu.lammps.tracking import Tracker
    from lpfm_insitu.tracking.snapshot import read_snapshot

    ns: dict = {}
    full = Tracker(PHASES_AB, _options(tmp_path), prefix="t_full", velocities=False)
    full.check_prefix_free(ns)
    full.publish(ns)
    assert ns["t_full_step"]() == -1 and ns["t_full_frac_B"]() == 0.0
    for step in range(10, 131, 10):
        full(_insitu_frame(step, _labels(step)))
    full.close()
    assert ns["t_full_checkpoint"]() == 1 and ns["t_full_ncheckpoints"]() == 2
    assert ns["t_full_frac_B"]() == 0.2 and ns["t_full_step"]() == 130
    snapshot = ns["t_full_snapshot_file"]()
    assert snapshot == str(tmp_path / "ck" / "snapshot.50.h5")
    assert ns["t_full_restart_file"]() == str(tmp_path / "ck" / "restart.50")
    snap = read_snapshot(snapshot)
    assert snap["step"] == 50 and snap["labels"].tolist() == _labels(50)
    assert snap["attrs"]["trigger_state"]["n_fired"] == 2
    full.reset()
    assert ns["t_full_checkpoint"]() == 0
    # the namespace holds one tracker per prefix
    with pytest.raises(InsituError, match="prefix 't_full' exists already"):
        Tracker(PHASES_AB, _options(tmp_path / "other"), prefix="t_full").check_prefix_free(ns)


def test_restart_with_step_0_labels_keeps_the_checkpoint_and_does_not_fire_again(tmp_path):
    """With the companion that classifies while a run is set up, a run restarted from a
    checkpoint classifies the checkpoint's own step first: that must not fire the trigger
    a second time, and the checkpoint's record must stay in the time series."""
    from lpfm_insitu.tracking.timeseries import read_time_series

    shutil.copy(MPI_SCRIPTS / "tracking_restart.in", tmp_path)
    _run(tmp_path, "tracking_restart.in", {"first": 1})
    original = read_time_series(tmp_path / "md.h5")
    assert original["step"].tolist() == list(range(0, 201, 10))  # step 0 classified too
    fired = original["triggers"]["step"].tolist()
    assert len(fired) == RESTART_MAX
    restarted = _run(tmp_path, "tracking_restart.in",
                     {"first": 1, "restart_step": fired[0], "dumpfile": "md.restarted.dump"})
    cont = read_time_series(tmp_path / "md.h5")
    assert cont["step"].tolist() == list(range(0, 201, 10))
    assert cont["triggers"]["step"].tolist() == fired
    assert cont["triggers"]["description"] == original["triggers"]["description"]
    assert f"checkpoint trigger 1/{RESTART_MAX} fired" not in restarted.stdout
