"""lpfm_insitu.bench.insitu_overhead on a tiny Cu crystal: structure, and proof the work ran."""

from __future__ import annotations

import json
import math
import shutil

import pytest

pytestmark = [pytest.mark.mpi, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.mark.skipif(shutil.which("lmp") is None or shutil.which("mpirun") is None,
                    reason="needs LAMMPS (lmp) and mpirun")
def test_insitu_overhead_tiny(tmp_path):
    from lpfm_insitu.bench.insitu_overhead import VARIANTS, run_insitu_overhead

    lines = []
    result = run_insitu_overhead("default", systems=("cu_eam",), n_atoms_target=500, ranks=2,
                                 steps=200, every=100, repeat=1, workdir=tmp_path,
                                 log=lines.append, timeout=300)
    json.dumps(result)  # JSON-serialisable as returned
    assert len(lines) == len(VARIANTS) + 1  # one line per run, one summary

    cu = result["systems"]["cu_eam"]
    assert cu["n_atoms"] == 500
    for variant in VARIANTS:
        assert len(cu["wall_s"][variant]) == 1
        assert all(w > 0 and math.isfinite(w) for w in cu["wall_s"][variant])
        assert cu["median_s"][variant] > 0
    for key in ("ratio_lpfm_to_plain", "ratio_cna_to_plain"):
        assert cu[key] > 0 and math.isfinite(cu[key])
    for key in ("lpfm_us_per_atom_per_invocation", "cna_us_per_atom_per_invocation",
                "lpfm_s_per_invocation", "cna_s_per_invocation"):
        assert math.isfinite(cu[key])  # CNA's extra time can be noise-negative on 500 atoms
    assert cu["lpfm_us_per_atom_per_invocation"] > 0

    # The classifier's own counter: fix python/invoke ran at steps 100 and 200 ...
    assert cu["lpfm_invocations"] == [2]
    # ... and wrote labels: they start at -1, so >= 0 means a classification wrote them.
    assert cu["lpfm_labelled_fraction"][0] > 0.5
    assert cu["lpfm_adapter_s"][0] > 0
    # compute cna/atom evaluated inside the timed loop at steps 100 and 200, and it sees fcc
    assert cu["cna_invocations"] == [2]
    assert cu["cna_expected_fraction"][0] > 0.9

    settings = result["settings"]
    assert settings["ranks"] == 2 and settings["steps"] == 200 and settings["every"] == 100
    assert settings["lammps_version"]
    assert len(settings["load_average_before"]) == 3
    assert (tmp_path / "cu_eam" / "lpfm_0" / "log.lammps").exists()
    # the README's lines ran: labels at step 0 (in the setup, not counted above) and the
    # tracking hook's time series
    from lpfm_insitu.tracking.timeseries import read_time_series

    series = read_time_series(tmp_path / "cu_eam" / "lpfm_0" / "track.h5")
    assert [int(s) for s in series["step"]] == [0, 100, 200]
