"""What a process pays before its first answer: imports, model loads, device choice."""

import subprocess
import sys

import pytest

from conftest import MPI_SCRIPTS
from lpfm_insitu.lammps.devices import pick_device, warn_once

HEAVY = ("torch", "mace", "e3nn", "scipy", "matscipy", "ase")


def _modules_after(code: str) -> set:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(done.stdout.split())


@pytest.mark.parametrize("code", ["import lpfm_insitu",
                                  "import lpfm_insitu.lammps",
                                  "from lpfm_insitu import __version__"])
def test_importing_the_package_imports_no_heavy_library(code):
    loaded = _modules_after(code)
    assert not [m for m in HEAVY if m in loaded]


def test_the_lazy_names_are_the_real_ones():
    loaded = _modules_after("import lpfm_insitu\n"
                            "from lpfm_insitu.model.inference import PhaseModel, PhaseResult\n"
                            "from lpfm_insitu.model.files import load_model\n"
                            "assert lpfm_insitu.PhaseModel is PhaseModel\n"
                            "assert lpfm_insitu.PhaseResult is PhaseResult\n"
                            "assert lpfm_insitu.load_model is load_model\n")
    assert "torch" in loaded
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        import lpfm_insitu

        lpfm_insitu.nothing_here  # noqa: B018


@pytest.mark.parametrize("ranks,gpus,shared", [(4, 4, False), (2, 4, False), (8, 4, True),
                                               (2, 1, True)])
def test_auto_device_takes_gpus_round_robin_and_warns_when_ranks_share_one(ranks, gpus, shared):
    picked = [pick_device("auto", k, ranks, gpus) for k in range(ranks)]
    assert [device for device, _ in picked] == [f"cuda:{k % gpus}" for k in range(ranks)]
    warnings = {warning for _, warning in picked}
    if shared:
        (warning,) = warnings
        assert f"{ranks} MPI ranks on this node share its {gpus} GPU(s)" in warning
        assert f"up to {-(-ranks // gpus)} ranks take turns" in warning
        assert "one rank per GPU" in warning
    else:
        assert warnings == {None}


def test_explicit_devices_and_no_gpu_do_not_warn():
    assert pick_device("auto", 3, 8, 0) == ("cpu", None)
    assert pick_device("cpu", 3, 8, 1) == ("cpu", None)
    assert pick_device("cuda:1", 3, 8, 2) == ("cuda:1", None)
    assert pick_device("cuda", 3, 8, 2)[0] == "cuda:1"
    with pytest.raises(ValueError, match="no CUDA device"):
        pick_device("cuda", 0, 1, 0)


def test_the_shared_gpu_warning_is_printed_once(capsys):
    message = "lpfm_insitu: WARNING: test message printed once"
    warn_once(message)
    warn_once(message)
    assert capsys.readouterr().out.count(message) == 1


@pytest.mark.mpi
def test_two_classifiers_load_the_model_once_per_rank(tmp_path, run_mpi_python):
    sys.path.insert(0, str(MPI_SCRIPTS))
    from insitu_common import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny.safetensors")
    result = run_mpi_python(MPI_SCRIPTS / "insitu_startup.py", 2, args=[model])
    assert result.returncode == 0 and "ALL OK" in result.stdout, \
        (result.stdout + result.stderr)[-4000:]


def test_every_command_help_imports_no_heavy_library():
    """The parser of every subcommand is built for `lpfm --help`: none may import the
    model's libraries (they load in the command's run)."""
    loaded = _modules_after(
        "import contextlib, io\n"
        "from lpfm_insitu.cli.main import COMMANDS, main\n"
        "for command in ('doctor', 'train', 'classify', 'demo', 'track', 'plot', 'eval',\n"
        "                'calibrate', 'bench'):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main([command, '--help'])\n"
        "        except SystemExit:\n"
        "            pass\n")
    assert not [m for m in HEAVY + ("h5py", "matplotlib") if m in loaded]
