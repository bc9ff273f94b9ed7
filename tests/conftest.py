"""Shared test helpers: running LAMMPS and Python under mpirun with the package importable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lpfm_insitu.lammps.launch import lammps_environment, mpirun_prefix, run_lammps

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "lammps_examples"
MPI_SCRIPTS = Path(__file__).resolve().parent / "mpi_scripts"


@pytest.fixture
def small_mace_file(tmp_path):
    """A small two-element ScaleShiftMACE (MACE-MP's class, vector channels, Z = 1 and 29)
    saved in MACE's own file format (a pickled module, as MACE-MP ships): the paper's
    frozen-featurizer path without a download."""
    import numpy as np
    import torch
    from e3nn import o3
    from mace import modules

    torch.manual_seed(2)
    mace = modules.ScaleShiftMACE(
        r_max=4.5, num_bessel=6, num_polynomial_cutoff=5, max_ell=2,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=2, num_elements=2, hidden_irreps=o3.Irreps("8x0e+8x1o"),
        MLP_irreps=o3.Irreps("8x0e"), atomic_energies=np.zeros(2), avg_num_neighbors=12.0,
        atomic_numbers=[1, 29], correlation=2, gate=torch.nn.functional.silu,
        atomic_inter_scale=1.0, atomic_inter_shift=0.0)
    path = tmp_path / "mace.model"
    torch.save(mace, path)
    return path


@pytest.fixture
def run_lmp():
    """Run a LAMMPS input under mpirun; fail the test with LAMMPS' output on error."""

    def _run(input_file, n_ranks=1, cwd=None, variables=None, timeout=600, check=True):
        result = run_lammps(input_file, n_ranks, variables=variables, cwd=cwd, timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(f"LAMMPS failed (exit {result.returncode}):\n"
                        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    return _run


@pytest.fixture
def run_mpi_python():
    """Run a Python script on N ranks; returns the CompletedProcess."""

    def _run(script, n_ranks=2, args=(), cwd=None, timeout=300):
        cmd = mpirun_prefix(n_ranks) + [sys.executable, str(script), *map(str, args)]
        return subprocess.run(cmd, cwd=cwd, env=lammps_environment(), timeout=timeout,
                              capture_output=True, text=True)

    return _run


def read_last_dump_frame(path):
    """The last frame of a LAMMPS text dump as an ase.Atoms with the extra columns as arrays."""
    from ase.io import read

    return read(path, index=-1, format="lammps-dump-text")
