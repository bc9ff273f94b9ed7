"""The README works as written: its links resolve, and its LAMMPS lines run as launched there."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from lpfm_insitu.lammps.launch import lmp_executable, mpirun_prefix

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")

# A small hot copper crystal: the "system set up" the README's lines are added to.
SYSTEM = """
units           metal
atom_style      atomic
lattice         fcc 3.615
region          box block 0 6 0 6 0 6
create_box      1 box
create_atoms    1 box
mass            1 63.546
pair_style      eam/alloy
pair_coeff      * * Cu_mishin1.eam.alloy Cu
velocity        all create 1000 4928459 loop geom
fix             md all nve
"""


def fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve_to_files_in_the_repository(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # web addresses and anchors within the page
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists() or not path.is_relative_to(REPO):
            broken.append(target)
    assert not broken, f"{page.name}: links to nothing in the repository: {broken}"


def test_readme_is_a_short_guide_and_links_every_docs_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    for page in DOCS:
        assert f"docs/{page.name}" in text, f"README does not link docs/{page.name}"
    assert "make demo" in text and "make test" in text


@pytest.mark.mpi
def test_readme_lammps_lines_run_with_tracking_under_the_readmes_launch(tmp_path):
    text = README.read_text()
    (lines,) = fenced_blocks(text, "lammps")
    (input_file := tmp_path / "in.readme").write_text(SYSTEM + lines)
    (launch,) = [line for block in fenced_blocks(text, "sh") for line in block.splitlines()
                 if line.startswith("export PYTHONPATH=")]
    # The README's export line, run from the repository root with this interpreter as the
    # environment's python; LAMMPS then gets nothing else from this process's PYTHONPATH.
    script = (f"cd {shlex.quote(str(REPO))} && "
              + launch.replace(".venv/bin/python", shlex.quote(sys.executable))
              + f" && cd {shlex.quote(str(tmp_path))} && "
              + shlex.join(mpirun_prefix(2) + [lmp_executable(), "-in", input_file.name]))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    header, rows = thermo_table(result.stdout)
    fcc = header.index("v_lpfm_frac_fcc")
    unknown = header.index("v_lpfm_frac_unknown")
    classified = [r for r in rows if r[0] >= 0]
    assert len(classified) == 11  # step 0 included
    assert all(r[fcc] > 0.95 and r[unknown] < 0.05 for r in classified), classified
    with h5py.File(tmp_path / "track.h5", "r") as series:
        assert list(series["step"][:]) == list(range(0, 1001, 100))
    dump = (tmp_path / "lpfm.dump").read_text()
    steps = [int(s) for s in re.findall(r"ITEM: TIMESTEP\n(\d+)", dump)]
    assert steps == list(range(0, 1001, 100))  # step 0 is classified and dumped
    assert "i_lpfm_phase d_lpfm_conf d2_lpfm_op[1] d2_lpfm_op[2] d2_lpfm_op[3] d2_lpfm_op[4]" \
        in dump


def thermo_table(log: str):
    lines = log.splitlines()
    start = max(i for i, line in enumerate(lines) if line.split()[:1] == ["Step"])
    header = lines[start].split()
    rows = []
    for line in lines[start + 1:]:  # the package's own lines come between thermo rows
        if line.startswith("Loop time"):
            break
        fields = line.split()
        if len(fields) == len(header) and re.match(r"^\d+$", fields[0]):
            rows.append(np.array(fields, dtype=float))
    return header, rows
