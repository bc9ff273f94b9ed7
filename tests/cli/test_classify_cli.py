"""`lpfm classify` on a LAMMPS text dump, with the shipped `fast` model."""

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read

from lpfm_insitu.cli.main import main
from lpfm_insitu.model.files import load_model

FCC = "A_cF4_225_a"


def _write_dump(path, atoms, step=1000, bounds="pp pp pp"):
    """What `dump ... custom N file id type x y z` writes for an orthogonal box."""
    cell = np.diag(atoms.cell)
    lines = ["ITEM: TIMESTEP", str(step), "ITEM: NUMBER OF ATOMS", str(len(atoms)),
             f"ITEM: BOX BOUNDS {bounds}"]
    lines += [f"0.0 {length:.8f}" for length in cell]
    lines.append("ITEM: ATOMS id type x y z")
    lines += [f"{k + 1} 1 {x:.6f} {y:.6f} {z:.6f}" for k, (x, y, z) in enumerate(atoms.positions)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def hot_copper_dump(tmp_path_factory):
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(4)
    atoms.positions += np.random.default_rng(7).normal(0.0, 0.08, atoms.positions.shape)
    path = tmp_path_factory.mktemp("dump") / "hot.dump"
    _write_dump(path, atoms)
    return path, atoms


def _run_json(capsys, *args):
    assert main(["classify", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_classify_a_lammps_dump_to_json_and_a_dump_with_extra_columns(hot_copper_dump, tmp_path,
                                                                      capsys):
    dump, atoms = hot_copper_dump
    out = tmp_path / "labelled.dump"
    report = _run_json(capsys, dump, "--model", "fast", "--output", out)
    assert report["n_atoms"] == len(atoms) == 256
    assert sum(report["fractions"].values()) == pytest.approx(1.0)
    assert report["fractions"][FCC] > 0.95  # 0.08 A of noise in Cu is a cool crystal

    reference = load_model("fast").classify_atoms(atoms)
    assert report["fractions"][FCC] == pytest.approx(
        np.mean(np.array(reference.label_names) == FCC))
    labelled = read(out, format="lammps-dump-text")
    np.testing.assert_allclose(labelled.positions, atoms.positions, atol=2e-6)
    columns = open(out).read().splitlines()[8].split()[2:]
    # the in-situ fix's column names, every phase's order parameter in model order
    assert columns == ["id", "type", "x", "y", "z", "i_lpfm_phase", "d_lpfm_conf"] + [
        f"d2_lpfm_op[{k}]" for k in range(1, len(reference.phases) + 1)]
    table = np.loadtxt(out, skiprows=9)
    np.testing.assert_array_equal(table[:, 5].astype(int), reference.labels)
    np.testing.assert_allclose(table[:, 7:], reference.logits, atol=1e-4)


def test_a_box_open_along_z_stays_open_in_the_output(hot_copper_dump, tmp_path, capsys):
    # a shock run's dump: periodic across, shrink-wrapped along the shock direction
    _, atoms = hot_copper_dump
    dump = tmp_path / "slab.dump"
    _write_dump(dump, atoms, bounds="pp pp ss")
    out = tmp_path / "labelled.dump"
    report = _run_json(capsys, dump, "--model", "fast", "--nn-distance", "2.556",
                       "--output", out)
    assert report["n_atoms"] == len(atoms)
    assert open(out).read().splitlines()[4] == "ITEM: BOX BOUNDS pp pp ff"
    assert read(out, format="lammps-dump-text").pbc.tolist() == [True, True, False]


def test_averaging_radius_option_overrides_the_model_file(hot_copper_dump, capsys):
    dump, atoms = hot_copper_dump
    report = _run_json(capsys, dump, "--model", "fast", "--averaging-radius", "0")
    assert report["averaging_radius"] == 0.0
    model = load_model("fast")
    model.averaging_radius = 0.0
    own = model.classify_atoms(atoms)
    assert report["mean_confidence"] == pytest.approx(float(own.confidence.mean()), abs=1e-6)
    averaged = _run_json(capsys, dump, "--model", "fast", "--averaging-radius", "4")
    model.averaging_radius = 4.0
    assert averaged["mean_confidence"] == pytest.approx(
        float(model.classify_atoms(atoms).confidence.mean()), abs=1e-6)
    assert averaged["mean_confidence"] != pytest.approx(report["mean_confidence"], abs=1e-3)


@pytest.mark.parametrize("args, message", [
    (["--output", "labels.csv"], "use a .xyz"),
    (["--averaging-radius", "-1"], "averaging_radius must be between 0"),
    (["--candidates", "A_cF4_225_a,B_nonsense"], "unknown phase name 'B_nonsense'"),
])
def test_bad_options_name_the_problem(hot_copper_dump, tmp_path, monkeypatch, capsys, args,
                                     message):
    monkeypatch.chdir(tmp_path)
    assert main(["classify", str(hot_copper_dump[0]), "--model", "fast", *args]) != 0
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "labels.csv").exists()


def test_missing_input_file_is_named(tmp_path, capsys):
    assert main(["classify", str(tmp_path / "nothing.dump"), "--model", "fast"]) != 0
    assert "nothing.dump' does not exist" in capsys.readouterr().err


def test_json_on_stdout_is_the_only_output_there(hot_copper_dump):
    """`lpfm classify --json | jq` must work: in a fresh process, where importing the
    network's libraries prints notices, stdout holds the JSON object and nothing else."""
    import subprocess
    import sys

    dump, atoms = hot_copper_dump
    done = subprocess.run([sys.executable, "-c", "from lpfm_insitu.cli.main import main; "
                           "raise SystemExit(main())", "classify", str(dump), "--model", "fast",
                           "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["n_atoms"] == len(atoms)


# --- what a user gets wrong, the box, OVITO, and a quick --help -------------------------------

def test_the_box_and_its_origin_are_kept(tmp_path, capsys):
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(3)
    origin = np.array([-10.5, 3.25, 100.0])
    dump = tmp_path / "shifted.dump"
    cell = np.diag(atoms.cell)
    lines = ["ITEM: TIMESTEP", "7", "ITEM: NUMBER OF ATOMS", str(len(atoms)),
             "ITEM: BOX BOUNDS pp pp pp"]
    lines += [f"{lo:.8f} {lo + length:.8f}" for lo, length in zip(origin, cell)]
    lines.append("ITEM: ATOMS id type x y z")
    lines += [f"{k + 1} 1 {x:.6f} {y:.6f} {z:.6f}"
              for k, (x, y, z) in enumerate(atoms.positions + origin)]
    dump.write_text("\n".join(lines) + "\n")
    out_dump, out_xyz = tmp_path / "out.dump", tmp_path / "out.xyz"
    for out in (out_dump, out_xyz):
        _run_json(capsys, dump, "--model", "fast", "--output", out)
    bounds = np.loadtxt(out_dump, skiprows=5, max_rows=3)
    np.testing.assert_allclose(bounds[:, 0], origin, atol=1e-6)
    np.testing.assert_allclose(bounds[:, 1], origin + cell, atol=1e-6)
    table = np.loadtxt(out_dump, skiprows=9)
    inside = (table[:, 2:5] >= bounds[:, 0] - 1e-6) & (table[:, 2:5] <= bounds[:, 1] + 1e-6)
    assert inside.all(), "atoms fell outside the written box"
    assert "Origin=" in open(out_xyz).readlines()[1]


def test_outputs_open_in_ovito_with_the_phase_as_a_typed_coloured_property(hot_copper_dump,
                                                                          tmp_path, capsys):
    ovito_io = pytest.importorskip("ovito.io")
    dump, atoms = hot_copper_dump
    out = tmp_path / "labelled.xyz"
    _run_json(capsys, dump, "--model", "fast", "--output", out)
    reference = load_model("fast").classify_atoms(atoms)
    data = ovito_io.import_file(str(out)).compute()
    types = data.particles["Structure Type"]
    names = {t.id: t.name for t in types.types}
    got = [names[k] for k in np.asarray(types)]
    from lpfm_insitu.training.prototypes import common_name

    expected = [common_name(p) if k >= 0 else "unknown"
                for k, p in zip(reference.labels, reference.label_names)]
    assert got == expected and "fcc" in got
    colors = np.asarray(data.particles["Color"])
    fcc = np.array(got) == "fcc"
    np.testing.assert_allclose(colors[fcc], np.tile([0.4, 1.0, 0.4], (fcc.sum(), 1)))
    np.testing.assert_array_equal(np.asarray(data.particles["lpfm_phase"]), reference.labels)
    np.testing.assert_allclose(np.asarray(data.particles["lpfm_conf"]), reference.confidence,
                               atol=1e-5)
    # the dump opens too, with the in-situ fix's columns as properties
    out_dump = tmp_path / "labelled.dump"
    _run_json(capsys, dump, "--model", "fast", "--output", out_dump)
    data = ovito_io.import_file(str(out_dump)).compute()
    np.testing.assert_array_equal(np.asarray(data.particles["i_lpfm_phase"]), reference.labels)


def test_a_lammps_data_file_is_read(tmp_path, capsys):
    from ase.io import write

    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(4)
    data_file = tmp_path / "cu.data"
    write(data_file, atoms, format="lammps-data", atom_style="atomic")
    report = _run_json(capsys, data_file, "--model", "fast")
    assert report["n_atoms"] == len(atoms) and report["fractions"][FCC] > 0.95
    assert report["phase_names"][FCC] == "fcc"


def _one_line_error(capsys, argv, *fragments):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_unreadable_inputs_get_one_line_naming_the_file_and_the_fix(tmp_path, capsys):
    import h5py

    series = tmp_path / "track.h5"
    h5py.File(series, "w").close()
    _one_line_error(capsys, ["classify", str(series)], "track.h5' is an HDF5 file",
                    "lpfm plot")
    junk = tmp_path / "notes.txt"
    junk.write_text("not atoms\n")
    _one_line_error(capsys, ["classify", str(junk)], "cannot read", "notes.txt", "--format")
    _one_line_error(capsys, ["classify", str(junk), "--format", "lammps-data"],
                    "as lammps-data", "--format", "--atom-style")
    dump = tmp_path / "x.dump"
    dump.write_text("ITEM: TIMESTEP\n0\n")
    _one_line_error(capsys, ["plot", str(dump)], "x.dump' is not an lpfm phase time series",
                    "lpfm track")
    _one_line_error(capsys, ["track", str(dump), "--output", str(tmp_path / "t.h5")],
                    "x.dump", "--format")


def test_debug_shows_the_traceback(tmp_path):
    from lpfm_insitu.errors import LPFMError

    with pytest.raises(LPFMError, match="does not exist"):
        main(["--debug", "classify", str(tmp_path / "missing.xyz")])


def test_help_and_version_import_no_model_code_and_answer_fast():
    """`lpfm --help` and `lpfm --version` only import the CLI (the package's own
    `__init__` is another matter: the check subtracts what importing it loads)."""
    import subprocess
    import sys

    probe = ("import sys, time, io, contextlib\n"
             "import lpfm_insitu\n"
             "before = set(sys.modules)\n"
             "start = time.perf_counter()\n"
             "from lpfm_insitu.cli.main import main\n"
             "for argv in (['--help'], ['--version']):\n"
             "    with contextlib.redirect_stdout(io.StringIO()):\n"
             "        try:\n"
             "            main(argv)\n"
             "        except SystemExit:\n"
             "            pass\n"
             "new = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in "
             "('torch', 'mace', 'e3nn', 'h5py', 'matplotlib', 'ase', 'scipy'))\n"
             "print(repr(new), time.perf_counter() - start)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    imported, seconds = done.stdout.rsplit(" ", 1)
    assert imported == "[]", imported
    assert float(seconds) < 1.0


def test_multi_frame_classify_shows_a_progress_bar(hot_copper_dump, tmp_path, capsys):
    dump, atoms = hot_copper_dump
    trajectory = tmp_path / "three.dump"
    trajectory.write_text(open(dump).read() * 3)
    assert main(["classify", str(trajectory), "--model", "fast", "--index", ":"]) == 0
    captured = capsys.readouterr()
    # leave=False clears the bar and fast frames may never redraw it at 3/3; its start shows
    assert "classify" in captured.err and "0/3" in captured.err
    assert "768 atoms in 3 frame(s)" in captured.out


def test_track_then_plot_a_dump_trajectory(hot_copper_dump, tmp_path, capsys):
    from lpfm_insitu.tracking.plotting import model_name, parent_index
    from lpfm_insitu.tracking.timeseries import read_time_series

    _, atoms = hot_copper_dump
    trajectory = tmp_path / "traj.dump"
    text = ""
    for step in (0, 100, 200):
        _write_dump(tmp_path / "frame.dump", atoms, step=step)
        text += (tmp_path / "frame.dump").read_text()
    trajectory.write_text(text)
    series = tmp_path / "traj.h5"
    assert main(["track", str(trajectory), "--output", str(series), "--model", "fast",
                 "--candidates", "fcc,HCP,bcc", "--profile-axis", "z",
                 "--profile-bins", "4"]) == 0
    captured = capsys.readouterr()
    assert "wrote 3 frame(s)" in captured.out and "0/3" in captured.err
    data = read_time_series(series)
    assert len(data["step"]) == 3 and data["attrs"]["model_name"] == "fast"
    assert model_name(data["attrs"]) == "fast"  # the title names the model, not its file
    assert data["phases"][parent_index(data)] == FCC
    known = np.asarray(data["fractions"])[:, :-1]
    allowed = [data["phases"].index(p) for p in (FCC, "A_hP2_194_c", "A_cI2_229_a")]
    assert np.allclose(np.delete(known, allowed, axis=1), 0.0)  # only the candidates
    assert main(["plot", str(series), "--output-dir", str(tmp_path / "plots")]) == 0
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["traj_fractions.png", "traj_profile_dominant.png",
                     "traj_profile_fractions.png"]
