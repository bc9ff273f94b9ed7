"""Per-atom snapshots: content, id ordering, atomic replacement (serial)."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lpfm_insitu.tracking import snapshot as snapshot_mod
from lpfm_insitu.tracking.snapshot import read_snapshot, write_snapshot

REPO = Path(__file__).resolve().parents[2]
PHASES = ("A_cI2_229_a", "A_hP2_194_c", "A_hP3_191_ad")
BOX = ([0.0, 0.0, 0.0], [30.0, 20.0, 10.0], [0.5, 0.0, 0.0])


def atoms(n, seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        ids=rng.permutation(np.arange(1, n + 1) * 3),
        types=rng.integers(1, 3, n),
        positions=rng.uniform(0, 10, (n, 3)),
        velocities=rng.normal(size=(n, 3)),
        labels=rng.integers(-1, 3, n),
        confidence=rng.uniform(0, 5, n).astype(np.float32),
        ops=rng.normal(size=(n, 3)).astype(np.float32),
    )


def write(path, step, a, **kw):
    return write_snapshot(path, step, step * 1e-3, BOX, a["ids"], a["types"], a["positions"], a["velocities"],
                          a["labels"], a["confidence"], a["ops"], PHASES, kw.pop("attrs", {"model": "m"}), **kw)


def test_roundtrip_sorted_by_id(tmp_path):
    a = atoms(257)
    path = tmp_path / "snap.h5"
    assert write(path, 1200, a, attrs={"model": "m", "trigger": ["appear:X>0.1"]}) == str(path)
    s = read_snapshot(path)
    order = np.argsort(a["ids"])
    assert s["step"] == 1200 and s["time"] == pytest.approx(1.2)
    np.testing.assert_array_equal(s["ids"], np.sort(a["ids"]))
    for name in ("types", "positions", "velocities", "labels", "confidence", "ops"):
        np.testing.assert_array_equal(s[name], a[name][order], err_msg=name)
    np.testing.assert_array_equal(s["box"]["hi"], BOX[1])
    np.testing.assert_array_equal(s["box"]["tilts"], BOX[2])
    assert s["phases"] == list(PHASES) + ["unknown"]
    assert s["phases"][-1] == "unknown"  # so phases[label] works for label -1 too
    assert s["attrs"] == {"model": "m", "trigger": ["appear:X>0.1"]}
    assert not (tmp_path / "snap.h5.tmp").exists()


def test_zero_atoms_and_no_velocities(tmp_path):
    a = atoms(0)
    a["velocities"] = None
    s = read_snapshot(write(tmp_path / "empty.h5", 5, a))
    assert s["ids"].shape == (0,) and s["positions"].shape == (0, 3) and s["ops"].shape == (0, 3)
    assert s["velocities"] is None


def test_invalid_input_raises_before_writing(tmp_path):
    a = atoms(10)
    a["ids"][1] = a["ids"][0]
    with pytest.raises(ValueError, match="duplicate atom ids"):
        write(tmp_path / "dup.h5", 0, a)
    b = atoms(10)
    b["ops"] = b["ops"][:, :2]
    with pytest.raises(ValueError, match="ops must have shape"):
        write(tmp_path / "bad.h5", 0, b)
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_write_keeps_old_file_and_leaves_no_partial(tmp_path, monkeypatch):
    path = tmp_path / "snap.h5"
    write(path, 100, atoms(50, seed=1))
    old_bytes = path.read_bytes()

    real = snapshot_mod._write_contents

    def failing(f, *args, **kwargs):
        real(f, *args, **kwargs)  # everything written ...
        raise OSError("disk full (simulated)")  # ... then the write fails

    monkeypatch.setattr(snapshot_mod, "_write_contents", failing)
    with pytest.raises(OSError, match="disk full"):
        write(path, 200, atoms(60, seed=2))
    assert path.read_bytes() == old_bytes
    assert read_snapshot(path)["step"] == 100
    assert not (tmp_path / "snap.h5.tmp").exists()

    monkeypatch.setattr(snapshot_mod, "_write_contents", failing)
    with pytest.raises(OSError):
        write(tmp_path / "new.h5", 200, atoms(60, seed=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap.h5"]  # no final file created


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {test_dir!r})
    import test_tracking_snapshot as t
    from lpfm_insitu.tracking import snapshot
    real = snapshot._write_contents
    def killed(f, *a, **k):
        real(f, *a, **k)
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # crash in the middle of the snapshot
    snapshot._write_contents = killed
    t.write(sys.argv[1], 200, t.atoms(80, seed=3))
    """
)


def test_sigkill_mid_write_keeps_old_file(tmp_path):
    path = tmp_path / "snap.h5"
    write(path, 100, atoms(50, seed=1))
    old_bytes = path.read_bytes()
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(test_dir=str(Path(__file__).parent)))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), str(path)], env=env, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert path.read_bytes() == old_bytes
    assert read_snapshot(path)["step"] == 100
