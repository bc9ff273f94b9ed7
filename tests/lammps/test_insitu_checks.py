"""In-situ checks driven from Python under `mpirun -np 3` (tests/mpi_scripts/insitu_checks.py):
halo exchange, configuration errors, ranks without atoms, atom-type selection, hooks."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

from conftest import MPI_SCRIPTS

sys.path.insert(0, str(MPI_SCRIPTS))
from insitu_common import decided, make_tiny_model  # noqa: E402

pytestmark = [pytest.mark.mpi, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    from lpfm_insitu.lammps.launch import lammps_environment, mpirun_prefix

    base = tmp_path_factory.mktemp("checks")
    model = make_tiny_model(base / "tiny.safetensors")
    cmd = mpirun_prefix(3) + [sys.executable, str(MPI_SCRIPTS / "insitu_checks.py"), str(model),
                              str(base)]
    result = subprocess.run(cmd, env=lammps_environment(), capture_output=True, text=True,
                            timeout=420)
    out = result.stdout + result.stderr
    assert result.returncode == 0 and "ALL OK" in result.stdout, out[-5000:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lpfm_insitu.model.files import load_model

        loaded = load_model(model)
    return dict(out=result.stdout, dir=base, model=loaded)


def test_configuration_errors_name_the_fix(checks):
    # each line is asserted inside the script on every rank; here: all were reached
    for what in ("unknown model", "unknown OP phase", "fp16 on the CPU", "missing fix",
                 "missing column", "wrong d2 width", "missing displacement column",
                 "type not in system", "ghost cutoff too small", "every mismatch",
                 "halo exchange and coverage check", "max_atoms_per_chunk gives the same answers",
                 "triclinic box"):
        assert f"ok  {what}" in checks["out"], what


def _reference(model, data, keep, denoise_steps=0, nn_distance=None):
    from ase import Atoms

    lo, hi = data["box_lo"], data["box_hi"]
    xy, xz, yz = data["tilts"]
    lx, ly, lz = hi - lo
    cell = np.array([[lx, 0, 0], [xy, ly, 0], [xz, yz, lz]])
    atoms = Atoms(f"Cu{keep.sum()}", positions=data["positions"][keep] - lo, cell=cell, pbc=True)
    atoms.wrap()
    return model.classify_atoms(atoms, denoise_steps=denoise_steps, nn_distance=nn_distance)


def _assert_equal(model, data, ref):
    ok = decided(ref, model.confidence_threshold)
    assert ok.mean() > 0.98
    np.testing.assert_array_equal(data["labels"][ok], ref.labels[ok])
    scale = np.abs(ref.logits).max()
    np.testing.assert_allclose(data["ops"], ref.logits, rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(data["disp"], ref.displacement, rtol=0,
                               atol=1e-4 * max(np.abs(ref.displacement).max(), 1e-12))


def test_ranks_without_atoms_give_the_single_process_answer(checks):
    data = dict(np.load(checks["dir"] / "slab.npz"))
    assert list(data["n_local_per_rank"][1:]) == [0, 0]
    ref = _reference(checks["model"], data, np.ones(len(data["ids"]), bool), denoise_steps=2,
                     nn_distance=3.615 / np.sqrt(2))
    _assert_equal(checks["model"], data, ref)
    assert np.abs(data["disp"]).max() > 1e-3


def test_types_selects_the_atoms_that_form_the_crystal(checks):
    data = dict(np.load(checks["dir"] / "types.npz"))
    assert set(np.unique(data["types"])) == {1}  # hooks see classified atoms only
    ref = _reference(checks["model"], data, np.ones(len(data["ids"]), bool))
    _assert_equal(checks["model"], data, ref)


def test_triclinic_box(checks):
    data = dict(np.load(checks["dir"] / "triclinic.npz"))
    assert np.abs(data["tilts"]).max() > 1.0
    ref = _reference(checks["model"], data, np.ones(len(data["ids"]), bool), denoise_steps=1)
    _assert_equal(checks["model"], data, ref)
    # 3 ranks split one axis: along the two others each rank holds the whole box, and
    # classifies periodic there instead of evaluating LAMMPS' ghost images (whole_axes)
    owning = data["n_local_per_rank"] > 0
    assert owning.sum() == 3
    assert np.all(data["n_ghost_per_rank"] < 0.5 * data["lammps_ghosts_per_rank"]), data


def test_default_threads_share_the_node_unless_omp_num_threads_is_set(monkeypatch):
    import os

    from lpfm_insitu.lammps.devices import default_threads

    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_threads(1) == cores
    assert default_threads(cores * 4) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads(2) is None


def test_configure_lists_every_option_with_its_default():
    import inspect

    from lpfm_insitu.lammps import configure
    from lpfm_insitu.lammps.settings import InsituSettings

    signature = inspect.signature(configure)
    defaults = InsituSettings()
    assert list(signature.parameters)[:4] == ["model", "fix", "every", "denoise_steps"]
    for name, parameter in signature.parameters.items():
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
        assert parameter.default == getattr(defaults, name)
        assert f"\n{name}: " in configure.__doc__
    with pytest.raises(TypeError, match="unexpected keyword argument 'modle'"):
        configure(modle="default")
