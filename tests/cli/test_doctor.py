"""`lpfm doctor` and the command line's basics."""

import subprocess
import sys
import types

import lpfm_insitu
from lpfm_insitu.cli import doctor
from lpfm_insitu.cli.main import main


class _FakeLammps:
    def __init__(self, packages, mpi=True):
        self.installed_packages = packages
        self.has_mpi_support = mpi

    def version(self):
        return 20240207

    def close(self):
        pass


def _fake_module(packages, mpi=True):
    return types.SimpleNamespace(lammps=lambda cmdargs: _FakeLammps(packages, mpi))


def test_lammps_without_python_package_gets_a_fix_line():
    checks = {c.name: c for c in doctor.check_lammps(_fake_module(["MANYBODY", "SHOCK"]))}
    python = checks["LAMMPS PYTHON package"]
    assert not python.ok
    text = "\n".join(python.lines())
    assert "MISSING" in text and "fix python/invoke is unavailable" in text
    assert "cmake -C cmake/lpfm.cmake" in text


def test_missing_lammps_module_is_reported_not_raised():
    def broken(cmdargs):
        raise OSError("liblammps.so: cannot open shared object file")

    checks = doctor.check_lammps(types.SimpleNamespace(lammps=broken))
    assert len(checks) == 1 and not checks[0].ok
    assert "liblammps.so" in checks[0].detail and "python3-lammps" in checks[0].fix


def test_serial_lammps_and_missing_shock_are_flagged():
    checks = {c.name: c for c in doctor.check_lammps(_fake_module(["PYTHON"], mpi=False))}
    assert not checks["LAMMPS MPI"].ok
    assert not checks["LAMMPS SHOCK package"].ok
    assert checks["LAMMPS PYTHON package"].ok


def test_mpi_mismatch_is_flagged(monkeypatch):
    fake_mpi = types.SimpleNamespace(Get_library_version=lambda: "MPICH 4.1", __file__="/x/MPI.so")
    monkeypatch.setattr(doctor, "_linked_mpi",
                        lambda path: "/mpich/libmpi.so.12" if path == "/x/MPI.so" else "/ompi/libmpi.so.40")
    check = doctor.check_mpi_match("/usr/lib/liblammps.so", fake_mpi)
    assert not check.ok and "/mpich/libmpi.so.12" in check.detail and "mpi4py" in check.fix


def test_doctor_on_this_installation_finds_the_real_stack(capsys):
    code = doctor.run()
    out = capsys.readouterr().out
    assert "[ok] LAMMPS PYTHON package" in out
    assert "[ok] mpi4py vs LAMMPS MPI" in out and "same library as LAMMPS" in out
    assert "[ok] mace-torch" in out and "[ok] e3nn" in out
    assert "[ok] model 'shape_aware'" in out and "[ok] model 'balanced'" in out
    assert "[ok] model 'lenient'" in out
    assert code == 0


def test_version_flag(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert lpfm_insitu.__version__ in capsys.readouterr().out


def test_e3nn_imports_under_strict_torch_load_after_lpfm_insitu():
    # A fresh interpreter with no override of torch.load's weights_only default.
    code = ("import os; os.environ.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None);"
            "import lpfm_insitu, torch; from e3nn import o3; import mace.modules;"
            "print(torch.__version__)")
    env = {k: v for k, v in __import__("os").environ.items()
           if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_doctor_prints_its_report_and_nothing_else():
    """No TorchScript warnings from e3nn and no mace notice on a line of its own: the
    optional accelerator is one remark inside the mace-torch line."""
    result = subprocess.run([sys.executable, "-m", "lpfm_insitu.cli.main", "doctor"],
                            capture_output=True, text=True, timeout=600)
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert all(line.startswith(("[ok]", "[MISSING]", "      fix:")) for line in lines[:-1]), lines
    assert "checks passed" in lines[-1]
    assert sum("cuequivariance" in line for line in lines) <= 1


def test_a_user_mistake_is_one_line_and_anything_else_keeps_its_traceback(monkeypatch,
                                                                          capsys):
    import pytest

    from lpfm_insitu.errors import LPFMError

    def fails_with(exc):
        def run_checks():
            raise exc
        monkeypatch.setattr(doctor, "run_checks", run_checks)

    fails_with(LPFMError("no such thing; give another"))
    assert main(["doctor"]) == 2
    assert capsys.readouterr().err == "lpfm doctor: error: no such thing; give another\n"
    with pytest.raises(LPFMError, match="no such thing"):
        main(["--debug", "doctor"])
    fails_with(KeyboardInterrupt())
    assert main(["doctor"]) == 130
    assert capsys.readouterr().err == "lpfm doctor: interrupted\n"
    # a bug is not a user mistake, even when it is a missing file or a bad value
    for bug in (FileNotFoundError("package data"), KeyError("x"), ValueError("y")):
        fails_with(bug)
        with pytest.raises(type(bug)):
            main(["doctor"])


def test_missing_files_the_user_names_are_one_line(tmp_path, capsys):
    missing = tmp_path / "missing.yaml"
    assert main(["train", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"lpfm train: error: [Errno 2] No such file or directory: '{missing}'\n"
    structure = tmp_path / "cu.xyz"
    structure.write_text("1\n\nCu 0 0 0\n")
    output = tmp_path / "no_folder" / "labels.dump"
    assert main(["classify", str(structure), "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert err == f"lpfm classify: error: [Errno 2] No such file or directory: '{output}'\n"
    assert main(["track", str(structure), "--output", str(output)]) == 2
    assert "No such file or directory" in capsys.readouterr().err
