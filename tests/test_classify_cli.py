"""`lpfm classify` on a LAMMPS text dump, with the shipped `fast` model."""

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read

from lpfm_insitu.cli import main
from lpfm_insitu.modelfile import load_model

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
    assert columns[:7] == ["id", "type", "x", "y", "z", "lpfm_phase", "lpfm_conf"]
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
    (["--candidates", "A_cF4_225_a,B_nonsense"], "not in this model's phases"),
])
def test_bad_options_name_the_problem(hot_copper_dump, tmp_path, monkeypatch, capsys, args,
                                     message):
    monkeypatch.chdir(tmp_path)
    assert main(["classify", str(hot_copper_dump[0]), "--model", "fast", *args]) != 0
    assert message in capsys.readouterr().err
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
    done = subprocess.run([sys.executable, "-c", "from lpfm_insitu.cli import main; "
                           "raise SystemExit(main())", "classify", str(dump), "--model", "fast",
                           "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["n_atoms"] == len(atoms)
